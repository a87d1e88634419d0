;;; meta-log-federation-events.el --- Events from the native runtime into Emacs  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; The module's background runtime never calls into Emacs.  It queues
;; events and writes one byte to a pipe process made here (Emacs 28's
;; `open_channel'), so Emacs wakes without polling; the pipe's filter
;; drains the queue and dispatches each event on the main thread.  A
;; handler that signals is reported with its name and does not stop the
;; others or later events.

;;; Code:

(require 'cl-lib)
(require 'meta-log-federation-custom)

(declare-function meta-log-federation--set-wakeup-process "meta-log-federation-module")
(declare-function meta-log-federation--clear-wakeup "meta-log-federation-module")
(declare-function meta-log-federation--drain-events-into "meta-log-federation-module")
(declare-function meta-log-federation--drain-slots "meta-log-federation-module")
(declare-function meta-log-federation--drain-slot-width "meta-log-federation-module")
(declare-function meta-log-federation--session-flush "meta-log-federation-module")
(declare-function meta-log-federation--note-gc "meta-log-federation-module")

(defvar meta-log-federation--wakeup-process nil
  "Pipe process whose filter drains the module's events.")

(defvar meta-log-federation--drain-buffer nil
  "Vector of event slots that the module fills; made once, reused.
Its event vectors are overwritten by the next drain: dispatchers must
not keep them.")

(defvar meta-log-federation--event-dispatchers nil
  "Alist of (TYPE . FUNCTION); FUNCTION receives an event vector of TYPE.")

(defvar meta-log-federation-handler-errors 0
  "Number of errors signalled by handlers and hook functions so far.")

(defvar meta-log-federation-last-handler-error nil
  "The last handler error reported, as a string.")

(defun meta-log-federation--on-event (type function)
  "Dispatch events of TYPE (a symbol) to FUNCTION."
  (setf (alist-get type meta-log-federation--event-dispatchers) function))

(defun meta-log-federation--report-handler-error (function err &optional context)
  "Report that FUNCTION signalled ERR while handling CONTEXT."
  (setq meta-log-federation-handler-errors (1+ meta-log-federation-handler-errors))
  (setq meta-log-federation-last-handler-error
        (format "meta-log-federation: handler `%s' failed%s: %s"
                (if (symbolp function) function "(anonymous function)")
                (if context (format " on %s" context) "")
                (error-message-string err)))
  (message "%s" meta-log-federation-last-handler-error))

(defun meta-log-federation--safe-funcall (function context &rest args)
  "Call FUNCTION with ARGS; report an error instead of letting it escape.
CONTEXT says what was being handled, for the report."
  (condition-case-unless-debug err
      (apply function args)
    (error (meta-log-federation--report-handler-error function err context)
           nil)))

(defun meta-log-federation--run-hook-safely (hook &rest args)
  "Run HOOK's functions with ARGS, each protected against errors."
  ;; An empty hook (most, most of the time) costs no closure and no list:
  ;; this runs for every message of a burst.
  (when (and (boundp hook) (symbol-value hook))
    (apply #'run-hook-wrapped hook
           (lambda (function &rest fargs)
             (apply #'meta-log-federation--safe-funcall function hook fargs)
             nil)
           args)))

(defun meta-log-federation--dispatch-event (event)
  "Hand EVENT (a vector whose first element is its type) to its dispatcher."
  (let ((function (alist-get (aref event 0) meta-log-federation--event-dispatchers)))
    (when function
      (meta-log-federation--safe-funcall function (aref event 0) event))))

(defun meta-log-federation--drain-buffer ()
  "Return the drain buffer, making it on first use."
  (or meta-log-federation--drain-buffer
      (setq meta-log-federation--drain-buffer
            (apply #'vector
                   (mapcar (lambda (_) (make-vector (meta-log-federation--drain-slot-width) nil))
                           (number-sequence 1 (meta-log-federation--drain-slots)))))))

(defcustom meta-log-federation-dispatch-budget 0.02
  "Seconds of event handling Emacs does before it looks at input again.
When the module has queued more events than fit in this time (a flood,
a burst), the rest are handled in later slices from a timer, so typing
and redisplay go on in between.  Order is kept."
  :type 'number
  :group 'meta-log-federation)

(defcustom meta-log-federation-dispatch-gc-cons-threshold (* 32 1024 1024)
  "Bytes Emacs may allocate while a burst of events is handled, before it collects.
A collection costs the size of Emacs' heap, not of the garbage: with
the default `gc-cons-threshold' a burst of messages (each makes a few
strings) set off a collection every few hundred messages, and these
took most of the time.  While events are handled, `gc-cons-threshold'
is at least this: within a slice of events (at most
`meta-log-federation-dispatch-budget' seconds, or a wait of
`meta-log-federation-wait-until'), and from one slice to the next while
a burst goes on; it is put back when the burst is over (unless
something else changed it meanwhile), and the collection then comes
once.  nil leaves `gc-cons-threshold' as it is."
  :type '(choice (const :tag "Leave gc-cons-threshold alone" nil) natnum)
  :group 'meta-log-federation)

(defvar meta-log-federation--gc-saved nil
  "The `gc-cons-threshold' to put back once a burst of events is over, or nil.")

(defvar meta-log-federation--gc-last-events 0.0
  "When events were last handled (`float-time').")

(defvar meta-log-federation--gc-timer nil
  "Timer that puts `gc-cons-threshold' back after a burst, or nil.")

(defconst meta-log-federation--gc-burst-gap 0.25
  "Seconds without events after which a burst is over.")

(defun meta-log-federation--gc-threshold ()
  "Return the `gc-cons-threshold' for handling events."
  (if meta-log-federation-dispatch-gc-cons-threshold
      (max gc-cons-threshold meta-log-federation-dispatch-gc-cons-threshold)
    gc-cons-threshold))

(defun meta-log-federation--gc-burst ()
  "Keep `gc-cons-threshold' raised while events keep coming.
Called after a slice that handled events, outside any binding of the
threshold.  Put back between slices, it ended nearly every slice of a
burst with a collection (12 of them, 0.4 s of 0.6 s, for 5,000
messages).  `meta-log-federation--gc-burst-gap' seconds after the last
events it is put back (unless something else changed it meanwhile), so
that the collection comes once, when Emacs is quiet."
  (setq meta-log-federation--gc-last-events (float-time))
  (when (and (null meta-log-federation--gc-saved)
             meta-log-federation-dispatch-gc-cons-threshold
             (< gc-cons-threshold meta-log-federation-dispatch-gc-cons-threshold))
    (setq meta-log-federation--gc-saved gc-cons-threshold
          gc-cons-threshold meta-log-federation-dispatch-gc-cons-threshold))
  (when (and meta-log-federation--gc-saved
             (not (memq meta-log-federation--gc-timer timer-list)))
    (setq meta-log-federation--gc-timer
          (run-at-time meta-log-federation--gc-burst-gap nil
                       #'meta-log-federation--gc-burst-over))))

(defun meta-log-federation--gc-burst-over (&optional now)
  "Put `gc-cons-threshold' back if no events came for a while, else wait more.
With NOW non-nil, put it back at once (federation stops)."
  (setq meta-log-federation--gc-timer nil)
  (let ((quiet (- (float-time) meta-log-federation--gc-last-events)))
    (cond
     ((null meta-log-federation--gc-saved))
     ((and (not now) (< quiet meta-log-federation--gc-burst-gap))
      (setq meta-log-federation--gc-timer
            (run-at-time (- meta-log-federation--gc-burst-gap quiet) nil
                         #'meta-log-federation--gc-burst-over)))
     (t
      ;; Unless someone set it meanwhile: then theirs stays.
      (when (eql gc-cons-threshold meta-log-federation-dispatch-gc-cons-threshold)
        (setq gc-cons-threshold meta-log-federation--gc-saved))
      (setq meta-log-federation--gc-saved nil)))))

(defvar meta-log-federation--backlog nil
  "Events drained from the module but not yet dispatched, oldest first.
They are copies: the drain buffer's vectors are reused.")

(defvar meta-log-federation--slice-timer nil
  "Timer that dispatches the next slice of waiting events, or nil.")

(defun meta-log-federation--schedule-slice ()
  "Dispatch the next slice of waiting events soon, after input."
  (unless (memq meta-log-federation--slice-timer timer-list)
    (setq meta-log-federation--slice-timer
          (run-at-time 0 nil #'meta-log-federation--dispatch-slice))))

(defun meta-log-federation--dispatch-slice ()
  "Dispatch waiting events for at most `meta-log-federation-dispatch-budget'."
  (setq meta-log-federation--slice-timer nil)
  (meta-log-federation-dispatch-pending meta-log-federation-dispatch-budget))

(defun meta-log-federation-dispatch-pending (&optional budget)
  "Drain waiting events from the module and dispatch them, in order.
With BUDGET (seconds), stop once that time is spent (after at least
one event) and leave the rest to a timer; without it, dispatch every
waiting event.  Return the number of events dispatched."
  (let ((count (meta-log-federation--dispatch-slice-1 budget)))
    (when (> count 0)
      (meta-log-federation--gc-burst))
    count))

(defun meta-log-federation--dispatch-slice-1 (budget)
  "Dispatch waiting events, for at most BUDGET seconds if non-nil.
Return the number dispatched; a slice timer is set if events remain."
  (let ((deadline (and budget (+ (float-time) budget)))
        (gc-cons-threshold (meta-log-federation--gc-threshold))
        (buffer (meta-log-federation--drain-buffer))
        (count 0)
        (n 0)
        (deferred nil))
    (cl-flet ((spent-p () (and deadline (> count 0) (> (float-time) deadline))))
      (while (and meta-log-federation--backlog (not (spent-p)))
        (meta-log-federation--dispatch-event (pop meta-log-federation--backlog))
        (setq count (1+ count)))
      (while (and (null meta-log-federation--backlog) (not deferred) (not (spent-p))
                  (> (setq n (meta-log-federation--drain-events-into buffer)) 0))
        (dotimes (i n)
          (if (or deferred (spent-p))
              (push (copy-sequence (aref buffer i)) deferred)
            (meta-log-federation--dispatch-event (aref buffer i))
            (setq count (1+ count)))))
      (when deferred
        (setq meta-log-federation--backlog
              (nconc meta-log-federation--backlog (nreverse deferred))))
      ;; Stopped early: the module writes no new wake-up byte for events
      ;; it queued before this drain, so a timer takes the next slice.
      (when (spent-p)
        (meta-log-federation--schedule-slice)))
    count))

(defun meta-log-federation--wakeup-filter (_process _output)
  "Filter of the wake-up pipe: drain and dispatch the module's events.
At most `meta-log-federation-dispatch-budget' seconds at a time.  When
a slice is already due from the timer, leave the events to it: that
slice drains the module's queue too, and running both back to back
would hold Emacs for two slices (and the garbage collections they
cause) with no timer or input in between.  A slice timer that is no
longer scheduled (cancelled by someone) does not count."
  (unless (memq meta-log-federation--slice-timer timer-list)
    (meta-log-federation-dispatch-pending meta-log-federation-dispatch-budget)))

(defun meta-log-federation--after-gc ()
  "Tell the module how long Emacs' garbage collections took so far.
On `post-gc-hook' while the module's events are followed: the module's
call timings leave out collections that Emacs ran inside a call."
  (when (fboundp 'meta-log-federation--note-gc)
    (meta-log-federation--note-gc gc-elapsed)))

(defun meta-log-federation--ensure-wakeup ()
  "Create the wake-up pipe and hand it to the module, unless it exists."
  (unless (memq #'meta-log-federation--after-gc post-gc-hook)
    (add-hook 'post-gc-hook #'meta-log-federation--after-gc)
    ;; The time of the collections so far: the next one counts from here.
    (meta-log-federation--after-gc))
  (unless (process-live-p meta-log-federation--wakeup-process)
    (setq meta-log-federation--wakeup-process
          (make-pipe-process :name " meta-log-federation-wakeup"
                             :coding 'binary
                             :noquery t
                             :buffer nil
                             :filter #'meta-log-federation--wakeup-filter
                             :sentinel #'ignore))
    (meta-log-federation--set-wakeup-process meta-log-federation--wakeup-process)))

(defun meta-log-federation--stop-wakeup ()
  "Detach and delete the wake-up pipe."
  (remove-hook 'post-gc-hook #'meta-log-federation--after-gc)
  (when (timerp meta-log-federation--gc-timer)
    (cancel-timer meta-log-federation--gc-timer))
  (meta-log-federation--gc-burst-over t)
  (when (fboundp 'meta-log-federation--clear-wakeup)
    (meta-log-federation--clear-wakeup))
  (when (process-live-p meta-log-federation--wakeup-process)
    (delete-process meta-log-federation--wakeup-process))
  (setq meta-log-federation--wakeup-process nil))

(defun meta-log-federation-wait-until (predicate timeout)
  "Pump events until PREDICATE is non-nil or TIMEOUT seconds pass.
Return PREDICATE's last value, so nil means the time ran out.  For
scripts and tests: interactive code should use hooks instead.
The module's session changes its state (a peer's status, a trust
decision) on its own thread just before it sends the event that runs
the hooks; so that PREDICATE's answer and the hooks agree, once it is
true the session's work so far is finished and its events are
dispatched before this returns."
  (let ((deadline (+ (float-time) timeout))
        result)
    (while (and (not (setq result (funcall predicate)))
                (< (float-time) deadline))
      (when (zerop (meta-log-federation-dispatch-pending))
        (accept-process-output nil 0.005)))
    (when (and result (fboundp 'meta-log-federation--session-flush)
               (meta-log-federation--session-flush))
      (meta-log-federation-dispatch-pending))
    result))

(provide 'meta-log-federation-events)
;;; meta-log-federation-events.el ends here
