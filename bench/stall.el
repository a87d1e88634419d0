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

(require 'cl-lib)

;; Garbage collection is Emacs' own stall: on this kind of machine one
;; collection of a batch Emacs with the package loaded takes 15-40 ms,
;; whoever made the garbage.  `mlf-stall-quiet' collects in a quiet
;; moment, so that a collection owed to earlier work (the bench's
;; polling, its own editing) does not land in the next measurement;
;; `mlf-stall-take' says how much of the longest stall was collection,
;; and how much the measured work allocated, from which a reader can tell
;; how often that work alone would set off a collection.

(defvar mlf-stall-interval 0.002
  "Seconds between two runs of the stall timer.")

(defvar mlf-stall-timer nil
  "The stall timer.")

(defvar mlf-stall-last nil
  "When the stall timer last ran.")

(defvar mlf-stall-last-gc 0.0
  "`gc-elapsed' when the stall timer last ran.")

(defvar mlf-stall-max 0.0
  "Longest delay of the stall timer so far, in seconds.")

(defvar mlf-stall-max-gc 0.0
  "Seconds of garbage collection within the longest delay so far.")

(defvar mlf-stall-counts nil
  "`memory-use-counts' when the measurement started.")

(defvar mlf-stall-taken nil
  "What `mlf-stall-take' returned last, as (MS GC-MS ALLOCATED-BYTES).")

(defun mlf-stall-tick ()
  "Note how late this run of the stall timer is."
  (let ((now (float-time)))
    (when mlf-stall-last
      (let ((delay (- now mlf-stall-last mlf-stall-interval)))
        (when (> delay mlf-stall-max)
          (setq mlf-stall-max delay
                mlf-stall-max-gc (- gc-elapsed mlf-stall-last-gc)))))
    (setq mlf-stall-last now mlf-stall-last-gc gc-elapsed)))

(defun mlf-stall-allocated (before after)
  "Bytes allocated between the `memory-use-counts' BEFORE and AFTER.
Conses, floats, vector slots, symbols, string bytes, intervals and
strings, at their size on a 64-bit Emacs."
  (cl-loop for b in before for a in after
           for size in '(16 16 8 48 1 56 32)
           sum (* size (- a b))))

(defun mlf-stall-reset ()
  "Start a new measurement."
  (setq mlf-stall-max 0.0 mlf-stall-max-gc 0.0 mlf-stall-last nil
        mlf-stall-counts (memory-use-counts)))

(defun mlf-stall-start ()
  "Start measuring stalls."
  (unless (timerp mlf-stall-timer)
    (setq mlf-stall-timer (run-at-time 0 mlf-stall-interval #'mlf-stall-tick)))
  (mlf-stall-reset))

(defun mlf-stall-take ()
  "Return the longest stall since the last call (ms); start anew.
`mlf-stall-taken' then holds that stall, the garbage collection in it,
and the bytes allocated since the measurement started."
  (setq mlf-stall-taken
        (list (* 1000 (max 0.0 mlf-stall-max))
              (* 1000 mlf-stall-max-gc)
              (if mlf-stall-counts
                  (mlf-stall-allocated mlf-stall-counts (memory-use-counts))
                0)))
  (mlf-stall-reset)
  (car mlf-stall-taken))

(defvar mlf-stall-collection-ms 0.0
  "How long the last collection of `mlf-stall-quiet' took, in ms.")

(defun mlf-stall-quiet ()
  "Collect garbage now, then start a new measurement.
Call in a quiet moment before the work to measure."
  (let ((start (float-time)))
    (garbage-collect)
    (setq mlf-stall-collection-ms (* 1000 (- (float-time) start))))
  (mlf-stall-reset))

(provide 'stall)
;;; stall.el ends here
