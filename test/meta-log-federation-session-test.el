;;; meta-log-federation-session-test.el --- The main thread gets finished events only  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; The module's session verifies, decrypts and merges federation
;; messages on its own thread.  These tests watch Emacs' side of a real
;; exchange with a peer (another batch Emacs on a private mosquitto) and
;; check that the dispatch saw finished events only: no raw federation
;; message, no call to verify or decrypt on the main thread.

;;; Code:

(require 'ert)
(require 'cl-lib)
(require 'meta-log-federation-test-helpers)
(require 'meta-log-federation-federation-test)

(declare-function meta-log-federation--module-call-stats "meta-log-federation-module")
(declare-function meta-log-federation--session-flush "meta-log-federation-module")
(declare-function meta-log-federation--session-stats "meta-log-federation-module")

(defconst session-test--inbound-work-calls
  "receive\\|handle\\|verify\\|decrypt\\|delivery-tick\\|save-delivery"
  "Module calls that would take in a message, or keep delivery, on the main thread.")

(defun session-test--inbound-work-counts ()
  "Return ((NAME . CALLS) ...) of the module calls that take in a message."
  (cl-loop for (name calls) in (meta-log-federation--module-call-stats)
           when (string-match-p session-test--inbound-work-calls name)
           collect (cons name calls)))

(ert-deftest session::the-dispatch-receives-finished-events-only ()
  "A peer's presence and message reach Emacs as finished events.
No `message' event of a federation topic is dispatched, and no module
call made on the main thread during the exchange takes in a received
message (verify, decrypt, merge): the session's worker did that."
  (meta-log-federation-test-with-federation
    (let* ((types nil)
           (raw-topics nil)
           (record (lambda (event)
                     (push (aref event 0) types)
                     (when (eq (aref event 0) 'message)
                       (push (aref event 1) raw-topics))))
           (got nil)
           (meta-log-federation-peer-message-functions
            (list (lambda (_from text) (setq got text))))
           (inbound-before (plist-get (meta-log-federation--session-stats) :inbound))
           (calls-before (session-test--inbound-work-counts)))
      (advice-add 'meta-log-federation--dispatch-event :before record)
      (unwind-protect
          (let* ((bob (meta-log-federation-test-start-peer "bob"))
                 (bob-id (process-get bob 'peer-id)))
            (should (meta-log-federation-wait-until
                     (lambda () (meta-log-federation-peer bob-id)) 20))
            (let ((id (meta-log-federation-send-peer-message bob-id "echo:over the worker")))
              (should (meta-log-federation-wait-until
                       (lambda () (equal got "echoed:over the worker")) 20))
              ;; Bob's worker saved his log and sent the receipt; ours took it in.
              (should (meta-log-federation-wait-until
                       (lambda () (eq (meta-log-federation-peer-message-state id) 'delivered))
                       20)))
            (should (memq 'peer-online types))
            (should (memq 'peer-message types))
            (should-not (cl-remove-if-not
                         (lambda (topic) (string-prefix-p "canvasl/" topic))
                         raw-topics))
            ;; No module call made during the exchange took in a message.
            (should (equal (session-test--inbound-work-counts) calls-before))
            ;; The session did the work: it took Bob's presence and reply from the broker.
            (should (>= (- (plist-get (meta-log-federation--session-stats) :inbound)
                           inbound-before)
                        2)))
        (advice-remove 'meta-log-federation--dispatch-event record)))))

(ert-deftest session::module-calls-are-timed-per-function ()
  "`meta-log-federation--module-call-stats' names each function with its longest call."
  (meta-log-federation-test-with-federation
    (meta-log-federation-peers)
    (let ((stats (meta-log-federation--module-call-stats)))
      (should (assoc "federation-peers" stats))
      (pcase-let ((`(,_name ,calls ,max-us ,total-us ,max-cpu-us)
                   (assoc "federation-peers" stats)))
        (should (>= calls 1))
        (should (<= 0 max-us total-us))
        (should (natnump max-cpu-us)))
      ;; Sorted: the longest call first.
      (should (equal (mapcar #'caddr stats)
                     (sort (mapcar #'caddr stats) #'>=))))))

(provide 'meta-log-federation-session-test)
;;; meta-log-federation-session-test.el ends here
