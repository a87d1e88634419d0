;;; link-bench.el --- Direct-link figures of `make bench' between two Emacs  -*- lexical-binding: t; -*-

;;; Commentary:

;; emacs --batch -Q -L lisp -L test -L bench -l bench/link-bench.el PORT [webrtc|tcp]
;; This Emacs and a batch Emacs peer (test/meta-log-federation-test-peer.el),
;; on the broker at 127.0.0.1:PORT, both with the real package:
;; - the round trip of a signed, encrypted peer message ("echo:N" and
;;   its answer "echoed:N") through the broker, then, on the same run,
;;   over a direct link (WebRTC on loopback, or the TCP fallback);
;; - the link's setup time, from `meta-log-federation-connect-to-peer'
;;   until `meta-log-federation-link-up-functions' run;
;; - peer messages per second, each signed and encrypted, until every
;;   receipt is back: through the broker, then over the link.
;; examples/webrtc_bench.rs measures the bare data channel and coturn.

;;; Code:

(require 'meta-log-federation-delivery-test)
(require 'meta-log-federation-direct)
(require 'cl-lib)

(defvar link-bench-port (string-to-number (pop command-line-args-left))
  "The port of the broker `make bench' started.")
(defvar link-bench-transport (intern (or (pop command-line-args-left) "webrtc"))
  "Which link to measure: `webrtc' (host path on loopback) or `tcp'.")
(setq meta-log-federation-test-broker-port link-bench-port)

(defun link-bench--median (xs)
  "Return the median of the numbers XS."
  (nth (/ (length xs) 2) (sort (copy-sequence xs) #'<)))

(defun link-bench--round-trips (peer-id n)
  "Return the median round trip in ms of N echoes to PEER-ID, one at a time."
  (let ((answer nil) (times nil))
    (let ((meta-log-federation-peer-message-functions
           (list (lambda (_from text) (setq answer text)))))
      (dotimes (i n)
        (let ((want (format "echoed:rt-%d" i))
              (start (float-time)))
          (setq answer nil)
          (meta-log-federation-send-peer-message peer-id (format "echo:rt-%d" i))
          (unless (meta-log-federation-wait-until (lambda () (equal answer want)) 10)
            (error "No echo %d from the peer within 10 s" i))
          (push (* 1000 (- (float-time) start)) times))))
    (link-bench--median times)))

(defun link-bench--rate (peer-id n tag)
  "Send N messages to PEER-ID; return messages per second until each receipt.
TAG makes the texts of this batch distinct."
  (let* ((delivered (make-hash-table :test #'equal))
         (meta-log-federation-peer-message-delivered-functions
          (list (lambda (id _peer) (puthash id t delivered))))
         (ids nil)
         (start (float-time)))
    (dotimes (i n)
      (push (meta-log-federation-send-peer-message peer-id (format "%s-%d" tag i)) ids))
    (unless (meta-log-federation-wait-until
             (lambda () (cl-every (lambda (id) (gethash id delivered)) ids)) 120)
      (error "Only %d of %d receipts within 120 s" (hash-table-count delivered) n))
    (/ n (- (float-time) start))))

(let* ((webrtc (eq link-bench-transport 'webrtc))
       (link-settings (if webrtc
                          '(meta-log-federation-webrtc t meta-log-federation-tcp-listen nil)
                        '(meta-log-federation-webrtc nil meta-log-federation-tcp-listen "127.0.0.1:0")))
       (meta-log-federation-webrtc webrtc)
       (meta-log-federation-tcp-listen (unless webrtc "127.0.0.1:0"))
       (meta-log-federation-direct-links nil)
       (ups nil))
  (when (and webrtc (not (memq 'webrtc (meta-log-federation--features))))
    (princ "links: SKIPPED: this module was built without WebRTC\n")
    (kill-emacs 0))
  (let ((meta-log-federation-link-up-functions
         (list (lambda (peer path) (push (cons peer (cons path (float-time))) ups)))))
    (delivery-test--as-peer
      (let* ((bob (delivery-test--start-peer "bench-bob" nil nil link-settings))
             (bob-id (process-get bob 'peer-id)))
        (unless (meta-log-federation-wait-until
                 (lambda () (eq (meta-log-federation-test-status bob-id) 'online)) 20)
          (error "The peer never came online"))
        (let* ((broker-rtt (link-bench--round-trips bob-id 50))
               (broker-rate (link-bench--rate bob-id 1000 "broker"))
               (start (float-time)))
          (meta-log-federation-connect-to-peer bob-id)
          (unless (meta-log-federation-wait-until (lambda () (assoc bob-id ups)) 40)
            (error "No link came up within 40 s: %S" (meta-log-federation-peer-links)))
          (let* ((up (cdr (assoc bob-id ups)))
                 (setup (* 1000 (- (cdr up) start)))
                 (link-rtt (link-bench--round-trips bob-id 50))
                 (link-rate (link-bench--rate bob-id 1000 "link")))
            (princ (format "links (%s, path %s): setup %.0f ms from connect-to-peer to link-up, two Emacs on loopback\n"
                           link-bench-transport (car up) setup))
            (princ (format "links: signed+encrypted peer message round trip (echo, median of 50): through the broker %.2f ms, over the link %.2f ms\n"
                           broker-rtt link-rtt))
            (princ (format "links: peer messages/s until every receipt is back (1,000, 100 B): through the broker %.0f, over the link %.0f\n"
                           broker-rate link-rate))))))))

;;; link-bench.el ends here
