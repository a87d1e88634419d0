;;; meta-log-federation-delivery-peer.el --- Delivery reports for scripted test peers  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; Loaded by the delivery tests before test/meta-log-federation-test-peer.el
;; in a batch Emacs peer.  It adds, on stderr ("PEER: " lines):
;;   CONNECTED N          the Nth (re)connection to the broker
;;   DISCONNECTED REASON  the connection went down
;;   DIAG ...             every 2 s when it changed: connected, the outbox
;;                        length, events accepted, drops by reason, the MQTT
;;                        client's counts, events waiting for Emacs (for a
;;                        failing test's report)
;;   DELIVERED ID PEER    a receipt for one of our messages
;;   FAILED ID REASON     one of our messages given up
;;   SESSION-ERROR TEXT   the client gave way to another with its client id
;;   MAXCALL ...          after each STATUS: the longest module call so far
;;                        (wall-clock and CPU microseconds, function)
;;   STATUS TOTAL DISTINCT DELIVERED FAILED SENT REPLAYS
;;                        once a second when something changed: sequence
;;                        messages handled (TOTAL) and different ones
;;                        (DISTINCT), receipts and failures of ours, SENT
;;                        sequence messages sent so far, REPLAYS duplicates
;;                        dropped before the handlers
;; With `delivery-peer-stream' set to (PEER-ID COUNT), it sends COUNT
;; messages "bench:seq:I" to PEER-ID, 20 every 20 ms, once PEER-ID is known.

;;; Code:

(require 'cl-lib)
(require 'meta-log-federation)

(declare-function meta-log-federation--session-stats "meta-log-federation-module")

(defvar delivery-peer-stream nil "Nil, or (PEER-ID COUNT) to stream to.")
(defvar delivery-peer-seen (make-hash-table :test #'equal) "Sequence texts handled.")
(defvar delivery-peer-total 0 "Sequence messages handled, duplicates included.")
(defvar delivery-peer-delivered 0 "Receipts for our messages.")
(defvar delivery-peer-failed 0 "Our messages given up.")
(defvar delivery-peer-sent 0 "Sequence messages sent.")
(defvar delivery-peer-connects 0 "Connections so far.")
(defvar delivery-peer-last-status nil "The last STATUS line printed.")

(defun delivery-peer-say (format-string &rest args)
  "Report FORMAT-STRING with ARGS on one line."
  (message "PEER: %s" (apply #'format format-string args)))

(add-hook 'meta-log-federation-mqtt-connected-hook
          (lambda ()
            (cl-incf delivery-peer-connects)
            (delivery-peer-say "CONNECTED %d" delivery-peer-connects)))

(add-hook 'meta-log-federation-mqtt-disconnected-hook
          (lambda (reason) (delivery-peer-say "DISCONNECTED %s" reason)))

(defvar delivery-peer-last-diag nil "The last DIAG line printed.")

(defun delivery-peer-diag ()
  "Print a DIAG line when it changed: what a failing test needs to know."
  (when (meta-log-federation-running-p)
    (let* ((c (meta-log-federation-counters))
           (stats (meta-log-federation-stats))
           (session (meta-log-federation--session-stats))
           (line (format "DIAG connected %s outbox %d accepted %s drops %S mqtt-received %s mqtt-pending %s events-waiting %s handled-messages %s session %S"
                         (if (meta-log-federation-connected-p) "yes" "no")
                         (length (meta-log-federation-outbox))
                         (plist-get c :accepted)
                         (cl-remove-if #'zerop (plist-get c :drops) :key #'cdr)
                         (plist-get stats :received)
                         (plist-get stats :pending)
                         (plist-get stats :events-waiting)
                         (plist-get c :messages-received)
                         session)))
      (unless (equal line delivery-peer-last-diag)
        (setq delivery-peer-last-diag line)
        (delivery-peer-say "%s" line)))))

(run-at-time 2 2 #'delivery-peer-diag)

(add-hook 'meta-log-federation-error-functions
          (lambda (context text)
            (when (equal context "session")
              (delivery-peer-say "SESSION-ERROR %s" text))))

(add-hook 'meta-log-federation-peer-message-functions
          (lambda (_from text)
            (when (string-prefix-p "bench:seq:" text)
              (cl-incf delivery-peer-total)
              (puthash text t delivery-peer-seen))))

(add-hook 'meta-log-federation-peer-message-delivered-functions
          (lambda (id peer)
            (cl-incf delivery-peer-delivered)
            (unless delivery-peer-stream
              (delivery-peer-say "DELIVERED %s %s" id peer))))

(add-hook 'meta-log-federation-peer-message-failed-functions
          (lambda (id _peer reason)
            (cl-incf delivery-peer-failed)
            (delivery-peer-say "FAILED %s %s" id reason)))

(defun delivery-peer-status ()
  "Print a STATUS line when the counts changed."
  (let ((line (format "STATUS %d %d %d %d %d %d" delivery-peer-total
                      (hash-table-count delivery-peer-seen) delivery-peer-delivered
                      delivery-peer-failed delivery-peer-sent
                      (if (meta-log-federation-running-p)
                          (meta-log-federation-drop-count "replay")
                        0))))
    (unless (equal line delivery-peer-last-status)
      (setq delivery-peer-last-status line)
      (delivery-peer-say "%s" line)
      ;; The longest the module kept Emacs busy in one call, for the figures.
      (let ((stats (meta-log-federation-stats)))
        (delivery-peer-say "MAXCALL %s us (cpu %s us) in %s" (plist-get stats :max-call-us)
                           (plist-get stats :max-call-cpu-us)
                           (plist-get stats :max-call-function))))))

(run-at-time 1 1 #'delivery-peer-status)

(defun delivery-peer-stream-step ()
  "Send the next 20 messages of the stream, if the recipient is known."
  (pcase-let ((`(,peer ,count) delivery-peer-stream))
    (when (and (meta-log-federation-running-p)
               (meta-log-federation-peer peer))
      (condition-case err
          (dotimes (_ (min 20 (- count delivery-peer-sent)))
            (meta-log-federation-send-peer-message
             peer (format "bench:seq:%d" delivery-peer-sent))
            (cl-incf delivery-peer-sent))
        ;; A full queue while the broker is away: try again at the next step.
        (error (delivery-peer-say "SEND-ERROR %s" (error-message-string err)))))
    (if (< delivery-peer-sent count)
        (run-at-time 0.02 nil #'delivery-peer-stream-step)
      (delivery-peer-status))))

(when delivery-peer-stream
  (run-at-time 0.5 nil #'delivery-peer-stream-step))

(provide 'meta-log-federation-delivery-peer)
;;; meta-log-federation-delivery-peer.el ends here
