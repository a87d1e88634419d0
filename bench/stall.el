;;; stall.el --- A timer-driven stall detector for benchmarks  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; `mlf-stall-start' runs a timer every `mlf-stall-interval' seconds;
;; each run notes how much later than due it came.  Emacs runs timers
;; only while its main thread waits (for input or for processes), so
;; the longest delay is the longest time the main thread was busy: the
;; longest stall a person would have felt.  `mlf-stall-take' returns
;; it (in ms) and starts a new measurement.  Used in both Emacs of
;; bench/edit-bench.el.

;;; Code:

(defvar mlf-stall-interval 0.002
  "Seconds between two runs of the stall timer.")

(defvar mlf-stall-timer nil
  "The stall timer.")

(defvar mlf-stall-last nil
  "When the stall timer last ran.")

(defvar mlf-stall-max 0.0
  "Longest delay of the stall timer so far, in seconds.")

(defun mlf-stall-tick ()
  "Note how late this run of the stall timer is."
  (let ((now (float-time)))
    (when mlf-stall-last
      (setq mlf-stall-max (max mlf-stall-max (- now mlf-stall-last mlf-stall-interval))))
    (setq mlf-stall-last now)))

(defun mlf-stall-start ()
  "Start measuring stalls."
  (unless (timerp mlf-stall-timer)
    (setq mlf-stall-timer (run-at-time 0 mlf-stall-interval #'mlf-stall-tick)))
  (setq mlf-stall-last nil mlf-stall-max 0.0))

(defun mlf-stall-take ()
  "Return the longest stall since the last call (ms); start anew."
  (prog1 (* 1000 (max 0.0 mlf-stall-max))
    (setq mlf-stall-max 0.0 mlf-stall-last nil)))

(provide 'stall)
;;; stall.el ends here
