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

(ert-deftest session::the-dispatch-receives-finished-events-only ()
  "A peer's presence and message reach Emacs as finished events.
No `message' event of a federation topic is dispatched and neither
`meta-log-federation--federation-receive' (verify, decrypt) nor
`meta-log-federation--sync-handle' (merge) runs on the main thread."
  (meta-log-federation-test-with-federation
    (let* ((types nil)
           (raw-topics nil)
           (main-thread-checks 0)
           (record (lambda (event)
                     (push (aref event 0) types)
                     (when (eq (aref event 0) 'message)
                       (push (aref event 1) raw-topics))))
           (count (lambda (&rest _) (cl-incf main-thread-checks)))
           (got nil)
           (meta-log-federation-peer-message-functions
            (list (lambda (_from text) (setq got text)))))
      (advice-add 'meta-log-federation--dispatch-event :before record)
      (advice-add 'meta-log-federation--federation-receive :before count)
      (advice-add 'meta-log-federation--sync-handle :before count)
      (unwind-protect
          (let* ((bob (meta-log-federation-test-start-peer "bob"))
                 (bob-id (process-get bob 'peer-id)))
            (should (meta-log-federation-wait-until
                     (lambda () (meta-log-federation-peer bob-id)) 20))
            (meta-log-federation-send-peer-message bob-id "echo:over the worker")
            (should (meta-log-federation-wait-until
                     (lambda () (equal got "echoed:over the worker")) 20))
            (should (memq 'peer-online types))
            (should (memq 'peer-message types))
            (should-not (cl-remove-if-not
                         (lambda (topic) (string-prefix-p "canvasl/" topic))
                         raw-topics))
            (should (= main-thread-checks 0))
            ;; The session did the work: it took messages from the broker.
            (should (> (plist-get (meta-log-federation--session-stats) :inbound) 0)))
        (advice-remove 'meta-log-federation--dispatch-event record)
        (advice-remove 'meta-log-federation--federation-receive count)
        (advice-remove 'meta-log-federation--sync-handle count)))))

(ert-deftest session::module-calls-are-timed-per-function ()
  "`meta-log-federation--module-call-stats' names each function with its longest call."
  (meta-log-federation-test-with-federation
    (meta-log-federation-peers)
    (let ((stats (meta-log-federation--module-call-stats)))
      (should (assoc "federation-peers" stats))
      (pcase-let ((`(,_name ,calls ,max-us ,total-us) (assoc "federation-peers" stats)))
        (should (>= calls 1))
        (should (<= 0 max-us total-us)))
      ;; Sorted: the longest call first.
      (should (equal (mapcar #'caddr stats)
                     (sort (mapcar #'caddr stats) #'>=))))))

(provide 'meta-log-federation-session-test)
;;; meta-log-federation-session-test.el ends here
