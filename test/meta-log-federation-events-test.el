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

;; Between two slices of a burst, `gc-cons-threshold' stays raised; it
;; is put back once no events came for `meta-log-federation--gc-burst-gap'.
;; The clock is set by hand (`meta-log-federation--gc-last-events'), so
;; that no assertion depends on how long a sleep took.

(ert-deftest events::a-burst-keeps-the-gc-threshold-raised-until-it-is-over ()
  (let* ((raised (* 32 1024 1024))
         (gc-cons-threshold 800000)
         (meta-log-federation-dispatch-gc-cons-threshold raised)
         (meta-log-federation--gc-saved nil)
         (meta-log-federation--gc-timer nil)
         (meta-log-federation--event-dispatchers
          (copy-sequence meta-log-federation--event-dispatchers))
         (seen 0))
    (meta-log-federation--on-event 'test-burst (lambda (_event) (setq seen (1+ seen))))
    (cl-flet ((burst (n)
                (setq meta-log-federation--backlog
                      (make-list n (vector 'test-burst)))
                (meta-log-federation-dispatch-pending))
              (quiet-for (seconds)
                (setq meta-log-federation--gc-last-events (- (float-time) seconds))
                (meta-log-federation--gc-burst-over)))
      (unwind-protect
          (progn
            (should (= 2 (burst 2)))
            (should (= 2 seen))
            ;; Raised outside the slice too, the person's value kept aside,
            ;; and a timer to put it back.
            (should (= gc-cons-threshold raised))
            (should (= meta-log-federation--gc-saved 800000))
            (should (memq meta-log-federation--gc-timer timer-list))
            ;; Events a moment ago: still raised, the timer set again.
            (quiet-for 0)
            (should (= gc-cons-threshold raised))
            (should (memq meta-log-federation--gc-timer timer-list))
            ;; Quiet for longer than the gap: put back.
            (quiet-for (* 2 meta-log-federation--gc-burst-gap))
            (should (= gc-cons-threshold 800000))
            (should-not meta-log-federation--gc-saved)
            ;; A value someone set during a burst stays.
            (burst 1)
            (setq gc-cons-threshold (* 64 1024 1024))
            (quiet-for (* 2 meta-log-federation--gc-burst-gap))
            (should (= gc-cons-threshold (* 64 1024 1024)))
            (should-not meta-log-federation--gc-saved)
            ;; The timer alone puts it back (no bound on how soon).
            (setq gc-cons-threshold 800000)
            (burst 1)
            (should (= gc-cons-threshold raised))
            (should (meta-log-federation-wait-until
                     (lambda () (= gc-cons-threshold 800000)) 10))
            ;; Off: left alone.
            (let ((meta-log-federation-dispatch-gc-cons-threshold nil))
              (burst 1)
              (should (= gc-cons-threshold 800000))))
        (when (timerp meta-log-federation--gc-timer)
          (cancel-timer meta-log-federation--gc-timer))
        (setq meta-log-federation--backlog nil)))))

(provide 'meta-log-federation-events-test)
;;; meta-log-federation-events-test.el ends here
