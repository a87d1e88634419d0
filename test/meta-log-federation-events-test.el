;;; meta-log-federation-events-test.el --- Events dispatched in slices  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; A flood of events must not hold Emacs' main thread: the wake-up
;; filter dispatches for at most `meta-log-federation-dispatch-budget'
;; seconds and leaves the rest to a timer.  These tests use a budget of
;; zero, so each slice dispatches exactly one event, and check that
;; every event still arrives, once and in order.  Names read `area::case'.

;;; Code:

(require 'meta-log-federation-test-helpers)

(ert-deftest events::a-burst-is-dispatched-in-slices-in-order ()
  (meta-log-federation-test-with-connection ()
    (let ((got nil)
          (per-call nil)
          (meta-log-federation-dispatch-budget 0))
      (meta-log-federation-test-subscribe-and-wait
       "slices/t" (lambda (_topic payload) (push payload got)) 1)
      (cl-letf* ((original (symbol-function 'meta-log-federation-dispatch-pending))
                 ((symbol-function 'meta-log-federation-dispatch-pending)
                  (lambda (&optional budget)
                    (let ((n (funcall original budget)))
                      (when budget (push n per-call))
                      n))))
        (dotimes (i 300)
          (meta-log-federation-mqtt-publish "slices/t" (number-to-string i) 1))
        ;; Only the filter and the slice timer dispatch here: no pumping
        ;; through `meta-log-federation-wait-until', which drains everything.
        (let ((deadline (+ (float-time) 20)))
          (while (and (< (length got) 300) (< (float-time) deadline))
            (accept-process-output nil 0.01))))
      (should (equal (reverse got)
                     (mapcar #'number-to-string (number-sequence 0 299))))
      ;; Each budgeted call stopped after its first event...
      (should (equal (delete-dups (delq 0 (copy-sequence per-call))) '(1)))
      ;; ...so most events came from the slice timer, not the wake-up.
      (should (> (length per-call) 250))
      (should (null meta-log-federation--backlog)))))

(ert-deftest events::an-unbudgeted-drain-dispatches-the-backlog-first ()
  (meta-log-federation-test-with-connection ()
    (let ((got nil)
          (meta-log-federation-dispatch-budget 0))
      (meta-log-federation-test-subscribe-and-wait
       "slices/u" (lambda (_topic payload) (push payload got)) 1)
      (dotimes (i 100)
        (meta-log-federation-mqtt-publish "slices/u" (number-to-string i) 1))
      ;; Give the broker a moment to hand all of them to the module, running
      ;; neither filters nor timers (only a silent pipe's output is
      ;; accepted): under load they could otherwise come in one by one, and
      ;; a drain of one event leaves no backlog.
      (let ((quiet (make-pipe-process :name "events-test-quiet" :noquery t)))
        (unwind-protect (accept-process-output quiet 1.0 nil 0)
          (delete-process quiet)))
      ;; Let only the wake-up filter run (no timers): it takes one event
      ;; and leaves the rest of its drain as a backlog...
      (let ((deadline (+ (float-time) 10)))
        (while (and (null meta-log-federation--backlog) (< (float-time) deadline))
          (accept-process-output meta-log-federation--wakeup-process 0.01 nil 0)))
      (should meta-log-federation--backlog)
      (should (< (length got) 100))
      ;; ...then a plain call (as scripts and shutdown make) takes the
      ;; backlog first, then what is still queued, in order.
      (should (> (meta-log-federation-dispatch-pending) 0))
      (should (null meta-log-federation--backlog))
      (meta-log-federation-wait-until (lambda () (= 100 (length got))) 10)
      (should (equal (reverse got)
                     (mapcar #'number-to-string (number-sequence 0 99)))))))

(provide 'meta-log-federation-events-test)
;;; meta-log-federation-events-test.el ends here
