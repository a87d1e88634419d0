;;; meta-log-federation-outbox.el --- Delivery receipts and the outbox of peer messages  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; Every peer message this Emacs sends stays in an outbox (a 0600 file
;; in `meta-log-federation-delivery-directory') until the recipient answers with a
;; signed, encrypted delivery receipt.  Meanwhile it is resent, as the
;; very same event, after every reconnection and with a growing delay
;; (`meta-log-federation-outbox-resend-delay'), until the receipt comes
;; or `meta-log-federation-outbox-expiry' runs out.  Each message's fate
;; is told through `meta-log-federation-peer-message-delivered-functions'
;; and `meta-log-federation-peer-message-failed-functions', and
;; `meta-log-federation-peer-message-state' answers for one message.
;;
;; On the receiving side, the ids of accepted messages are kept in a
;; file beside the outbox, so a resend after a restart of
;; this Emacs is recognised as a duplicate (and acknowledged again)
;; instead of reaching the message handlers twice.
;;
;; The module does the work (src/federation/outbox.rs, receipts.rs);
;; this file sets it up, runs the upkeep timer and the hooks.

;;; Code:

(require 'cl-lib)
(require 'meta-log-federation-custom)
(require 'meta-log-federation-events)
(require 'meta-log-federation-mqtt)

(declare-function meta-log-federation--federation-open-delivery "meta-log-federation-module")
(declare-function meta-log-federation--session-run-delivery "meta-log-federation-module")
(declare-function meta-log-federation--session-delivery-now "meta-log-federation-module")
(declare-function meta-log-federation--federation-outbox-resend "meta-log-federation-module")
(declare-function meta-log-federation--federation-outbox "meta-log-federation-module")
(declare-function meta-log-federation--federation-save-delivery "meta-log-federation-module")
(declare-function meta-log-federation-running-p "meta-log-federation-node")

;;;; Options

(defcustom meta-log-federation-delivery-directory
  (locate-user-emacs-file "meta-log/delivery/")
  "Directory of the delivery state, one pair of files per identity.
PEER-ID-outbox.json holds the peer messages waiting for a delivery
receipt; PEER-ID-received.json the ids of peer messages accepted
recently, so that a message resent after a restart is recognised as a
duplicate.  Both are written atomically with mode 0600."
  :type 'directory
  :group 'meta-log-federation)

(defcustom meta-log-federation-outbox-expiry 600
  "Seconds after which a peer message without a receipt counts as failed.
Recipients refuse events older than their
`meta-log-federation-max-event-age' (600 s by default), so a longer
expiry only helps when both are raised."
  :type 'natnum
  :group 'meta-log-federation)

(defcustom meta-log-federation-outbox-resend-delay 15
  "Seconds before a message without a receipt is sent again.
The delay doubles after each resend, up to
`meta-log-federation-outbox-resend-max-delay'.  Every reconnection also
resends all waiting messages at once."
  :type 'natnum
  :group 'meta-log-federation)

(defcustom meta-log-federation-outbox-resend-max-delay 120
  "Longest wait, in seconds, between two resends of one message."
  :type 'natnum
  :group 'meta-log-federation)

(defcustom meta-log-federation-outbox-capacity 10000
  "Most peer messages that may wait for a receipt.
Beyond it, sending signals `meta-log-federation-queue-full'."
  :type 'natnum
  :group 'meta-log-federation)

;;;; Hooks

(defvar meta-log-federation-peer-message-delivered-functions nil
  "Functions called with (ID PEER) when PEER acknowledged message ID.
ID is the event id that `meta-log-federation-send-peer-message'
returned.")

(defvar meta-log-federation-peer-message-failed-functions nil
  "Functions called with (ID PEER REASON) when message ID was given up.
REASON is a string that says why (no receipt before
`meta-log-federation-outbox-expiry').")

;;;; State

(defconst meta-log-federation--delivery-tick-interval 0.5
  "Seconds between two runs of the delivery upkeep.
Receipts for accepted messages go out at the next run, in one batch
per sender.")

(defvar meta-log-federation--message-states (make-hash-table :test #'equal)
  "Message id -> (STATE PEER REASON) for messages sent in this session.
STATE is `sent', `delivered' or `failed'.")

(defvar meta-log-federation--delivery-counts (make-hash-table :test #'equal)
  "Peer id -> (DELIVERED . FAILED) counts of this session.")

(defvar meta-log-federation--outbox-waiting (make-hash-table :test #'equal)
  "Peer id -> messages waiting for its receipt, as of the last upkeep.")

(defvar meta-log-federation--delivery-errors-shown nil
  "Delivery error texts already shown as warnings in this session.")

;;;; Setting up and tearing down

(defun meta-log-federation--delivery-file (peer-id what)
  "Return the delivery file WHAT (\"outbox\" or \"received\") of PEER-ID."
  (expand-file-name (format "%s-%s.json" peer-id what)
                    meta-log-federation-delivery-directory))

(defun meta-log-federation--outbox-settings (peer-id)
  "Return the plist of delivery settings of PEER-ID for the module."
  (list :outbox-file (meta-log-federation--delivery-file peer-id "outbox")
        :received-file (meta-log-federation--delivery-file peer-id "received")
        :expiry meta-log-federation-outbox-expiry
        :resend-after meta-log-federation-outbox-resend-delay
        :resend-max meta-log-federation-outbox-resend-max-delay
        :capacity meta-log-federation-outbox-capacity))

(defun meta-log-federation--outbox-open (peer-id)
  "Load the outbox of PEER-ID and start the delivery upkeep.
The node must exist.  Messages left unacknowledged by an earlier
session are resent at the first connection."
  (make-directory meta-log-federation-delivery-directory t)
  (dolist (warning (meta-log-federation--federation-open-delivery
                    (meta-log-federation--outbox-settings peer-id)))
    (display-warning 'meta-log-federation warning :warning))
  (clrhash meta-log-federation--message-states)
  (clrhash meta-log-federation--delivery-counts)
  (clrhash meta-log-federation--outbox-waiting)
  (setq meta-log-federation--delivery-errors-shown nil)
  (dolist (p (meta-log-federation--federation-outbox))
    (puthash (plist-get p :id) (list 'sent (plist-get p :peer) nil)
             meta-log-federation--message-states))
  (add-hook 'meta-log-federation-mqtt-connected-hook #'meta-log-federation--outbox-resend)
  ;; The upkeep (saving two files, receipts, resends) runs on the session's
  ;; worker; a `delivery' event brings its outcome.
  (meta-log-federation--session-run-delivery meta-log-federation--delivery-tick-interval))

(defun meta-log-federation--outbox-close ()
  "Stop the upkeep, run it once more (receipts due) and save."
  (remove-hook 'meta-log-federation-mqtt-connected-hook #'meta-log-federation--outbox-resend)
  (when (meta-log-federation-running-p)
    (meta-log-federation--session-run-delivery nil)
    (meta-log-federation--session-delivery-now)
    (condition-case err
        (meta-log-federation--federation-save-delivery)
      (error (display-warning 'meta-log-federation (error-message-string err) :error)))))

;;;; Upkeep

(defun meta-log-federation--outbox-resend ()
  "Send every unacknowledged message again (after a reconnection)."
  (when (meta-log-federation-running-p)
    (let ((n (meta-log-federation--federation-outbox-resend)))
      (when (> n 0)
        (meta-log-federation--log "resent %d messages that had no receipt yet" n)))))

(defun meta-log-federation--on-delivery (event)
  "Take in EVENT [delivery FAILED ERRORS WAITING] of the worker's upkeep.
FAILED is ((ID PEER REASON) ...), messages given up; ERRORS texts of
what could not be saved or sent (each shown once a session); WAITING
\((PEER . COUNT) ...), the messages still waiting for a receipt."
  (clrhash meta-log-federation--outbox-waiting)
  (dolist (w (aref event 3))
    (puthash (car w) (cdr w) meta-log-federation--outbox-waiting))
  (dolist (f (aref event 1))
    (apply #'meta-log-federation--note-failed f))
  (dolist (e (aref event 2))
    (unless (member e meta-log-federation--delivery-errors-shown)
      (push e meta-log-federation--delivery-errors-shown)
      (display-warning 'meta-log-federation (format "Delivery: %s" e) :warning))))

(meta-log-federation--on-event 'delivery #'meta-log-federation--on-delivery)

(defun meta-log-federation--count-delivery (peer delivered)
  "Count one message to PEER as DELIVERED (non-nil) or failed."
  (let ((c (or (gethash peer meta-log-federation--delivery-counts) (cons 0 0))))
    (if delivered (cl-incf (car c)) (cl-incf (cdr c)))
    (puthash peer c meta-log-federation--delivery-counts)))

(defun meta-log-federation--count-waiting (peer delta)
  "Add DELTA to the count of messages to PEER waiting for a receipt."
  (let ((n (max 0 (+ delta (gethash peer meta-log-federation--outbox-waiting 0)))))
    (if (zerop n)
        (remhash peer meta-log-federation--outbox-waiting)
      (puthash peer n meta-log-federation--outbox-waiting))))

(defun meta-log-federation--note-sent (id peer)
  "Record that message ID went to PEER and waits for its receipt."
  (puthash id (list 'sent peer nil) meta-log-federation--message-states)
  (meta-log-federation--count-waiting peer 1))

(defun meta-log-federation--note-delivered (pairs)
  "Report the messages in PAIRS, a list of (ID PEER), as delivered."
  (dolist (pair pairs)
    (pcase-let ((`(,id ,peer) pair))
      (puthash id (list 'delivered peer nil) meta-log-federation--message-states)
      (meta-log-federation--count-waiting peer -1)
      (meta-log-federation--count-delivery peer t)
      (meta-log-federation--run-hook-safely
       'meta-log-federation-peer-message-delivered-functions id peer)))
  (when pairs
    (run-hooks 'meta-log-federation-peers-changed-hook)))

(defun meta-log-federation--note-failed (id peer reason)
  "Report message ID to PEER as failed for REASON."
  (puthash id (list 'failed peer reason) meta-log-federation--message-states)
  (meta-log-federation--count-waiting peer -1)
  (meta-log-federation--count-delivery peer nil)
  (meta-log-federation--log "a message to %s failed: %s"
                            (meta-log-federation--short-peer peer) reason)
  (meta-log-federation--run-hook-safely
   'meta-log-federation-peer-message-failed-functions id peer reason)
  (run-hooks 'meta-log-federation-peers-changed-hook))

(defun meta-log-federation--short-peer (peer)
  "Return the first 12 characters of the peer id PEER."
  (if (> (length peer) 12) (substring peer 0 12) peer))

;;;; Queries

(defun meta-log-federation-peer-message-state (id)
  "Return the state of the peer message ID sent in this session.
`sent' (waiting for its receipt), `delivered', `failed', or nil for an
id this session did not send."
  (car (gethash id meta-log-federation--message-states)))

(defun meta-log-federation-outbox ()
  "Return the messages waiting for a receipt, oldest first, as plists.
Keys: :id :peer :first-sent :attempts :next-resend.  Interactively, say
how many wait."
  (interactive)
  (let ((pending (if (meta-log-federation-running-p)
                     (meta-log-federation--federation-outbox)
                   nil)))
    (when (called-interactively-p 'interactive)
      (message "meta-log-federation: %d messages wait for a delivery receipt"
               (length pending)))
    pending))

(defun meta-log-federation-outbox-peer-summary (peer)
  "Return a short text of the delivery state of messages to PEER.
Such as \"2 waiting, 5 delivered, 1 failed\"; \"\" when nothing was
sent to PEER in this session."
  (let* ((waiting (gethash peer meta-log-federation--outbox-waiting 0))
         (c (gethash peer meta-log-federation--delivery-counts))
         (parts (delq nil (list (and (> waiting 0) (format "%d waiting" waiting))
                                (and c (> (car c) 0) (format "%d delivered" (car c)))
                                (and c (> (cdr c) 0) (format "%d failed" (cdr c)))))))
    (mapconcat #'identity parts ", ")))

(provide 'meta-log-federation-outbox)
;;; meta-log-federation-outbox.el ends here
