;;; meta-log-federation-sync-status.el --- How CanvasL sync is doing, and retries of failed writes  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; Sync must never stop silently.  This file:
;;
;; - retries the writes that failed (a full disk, permissions) with a
;;   growing delay until they succeed, without waiting for a peer's next
;;   edit; the first failure of a share is a warning, each failure runs
;;   `meta-log-federation-sync-write-failed-functions', and success runs
;;   `meta-log-federation-sync-write-recovered-functions';
;; - shows how every share is doing: M-x `meta-log-federation-sync-status'
;;   (healthy, rebuilding or rebuilt after its merge state was damaged or
;;   missing, when data last went out and came in, writes waiting, errors);
;; - gives the mode line a short mark while federation is connected but
;;   sync is not working (`meta-log-federation-sync-mode-line-problem').
;;
;; The engine (the native module) keeps the per-share state; this file
;; only asks it and shows it.

;;; Code:

(require 'cl-lib)
(require 'meta-log-federation-custom)
(require 'meta-log-federation-events)

(declare-function meta-log-federation--sync-status "meta-log-federation-module")
(declare-function meta-log-federation--sync-retry-writes "meta-log-federation-module")
(declare-function meta-log-federation--sync-pending-writes "meta-log-federation-module")
(declare-function meta-log-federation--sync-run-actions "meta-log-federation-sync")
(declare-function meta-log-federation-sync-running-p "meta-log-federation-sync")
(declare-function meta-log-federation-connected-p "meta-log-federation-node")

(defcustom meta-log-federation-sync-retry-initial-delay 2
  "Seconds before the first retry of a write that failed.
The delay doubles after each failed retry, up to
`meta-log-federation-sync-retry-max-delay'."
  :type 'number
  :group 'meta-log-federation)

(defcustom meta-log-federation-sync-retry-max-delay 60
  "Longest delay in seconds between two retries of a write that failed."
  :type 'number
  :group 'meta-log-federation)

(defvar meta-log-federation-sync-write-failed-functions nil
  "Functions called with (URL FILE MESSAGE ATTEMPT) when a sync write fails.
URL is the share, FILE the file that could not be written (the synced
file or its merge state), MESSAGE the system's error, ATTEMPT 1 for the
first failure and higher for failed retries.  The old file is intact
and the write is retried until it succeeds.")

(defvar meta-log-federation-sync-write-recovered-functions nil
  "Functions called with (URL) when a failed sync write finally succeeded.")

(defvar meta-log-federation--sync-failing (make-hash-table :test #'equal)
  "Share URL -> (FILE MESSAGE ATTEMPT) of its write waiting to be retried.")

(defvar meta-log-federation--sync-retry-timer nil
  "Timer of the next retry of failed writes.")

(defvar meta-log-federation--sync-retry-delay nil
  "Delay in seconds before the next retry (nil: the initial delay).")

(defvar meta-log-federation--sync-retrying nil
  "Non-nil while a retry runs (its failures do not schedule another one).")

(defvar meta-log-federation--sync-start-error nil
  "Why sync could not start, or nil.")

(defvar meta-log-federation--sync-warned-errors nil
  "Error messages already shown as warnings (each is shown once).")

;;;; Failed writes and their retries

(defun meta-log-federation--sync-write-failed (url file message attempt)
  "Note that writing FILE of share URL failed with MESSAGE (ATTEMPT-th time).
Warn on the first failure, run the hook, and make sure a retry comes."
  (puthash url (list file message attempt) meta-log-federation--sync-failing)
  (when (= attempt 1)
    (display-warning
     'meta-log-federation
     (format "%s: cannot write %s (%s). The old file is intact; the write is retried \
until it succeeds (M-x meta-log-federation-sync-status)."
             url file message)
     :warning))
  (meta-log-federation--log "sync write of %s failed (attempt %d): %s" file attempt message)
  (meta-log-federation--run-hook-safely
   'meta-log-federation-sync-write-failed-functions url file message attempt)
  (unless meta-log-federation--sync-retrying
    (meta-log-federation--sync-schedule-retry))
  (meta-log-federation--sync-update-mode-line))

(defun meta-log-federation--sync-schedule-retry ()
  "Schedule a retry of the failed writes, unless one is scheduled."
  (unless (timerp meta-log-federation--sync-retry-timer)
    (setq meta-log-federation--sync-retry-timer
          (run-at-time (or meta-log-federation--sync-retry-delay
                           meta-log-federation-sync-retry-initial-delay)
                       nil #'meta-log-federation--sync-retry))))

(defun meta-log-federation--sync-retry ()
  "Retry the failed writes; schedule the next retry with a longer delay if needed."
  (setq meta-log-federation--sync-retry-timer nil)
  (when (and (meta-log-federation-sync-running-p)
             (> (hash-table-count meta-log-federation--sync-failing) 0))
    (let ((meta-log-federation--sync-retrying t))
      (condition-case err
          (meta-log-federation--sync-run-actions (meta-log-federation--sync-retry-writes))
        (meta-log-federation-error
         (meta-log-federation--log "sync retry: %s" (error-message-string err)))))
    (let* ((status (meta-log-federation--sync-status))
           (still (mapcar (lambda (s) (plist-get s :url))
                          (cl-remove-if-not (lambda (s) (plist-get s :pending-write))
                                            (car status)))))
      (meta-log-federation--sync-run-actions (cdr status))
      (maphash (lambda (url _)
                 (unless (member url still)
                   (remhash url meta-log-federation--sync-failing)
                   (message "meta-log-federation: %s is written again" url)
                   (meta-log-federation--run-hook-safely
                    'meta-log-federation-sync-write-recovered-functions url)))
               meta-log-federation--sync-failing)
      (if (null still)
          (setq meta-log-federation--sync-retry-delay nil)
        (setq meta-log-federation--sync-retry-delay
              (min meta-log-federation-sync-retry-max-delay
                   (* 2 (or meta-log-federation--sync-retry-delay
                            meta-log-federation-sync-retry-initial-delay))))
        (meta-log-federation--sync-schedule-retry))))
  (meta-log-federation--sync-update-mode-line))

(defun meta-log-federation--sync-status-reset ()
  "Forget failed writes and stop retrying (sync stopped)."
  (when (timerp meta-log-federation--sync-retry-timer)
    (cancel-timer meta-log-federation--sync-retry-timer))
  (setq meta-log-federation--sync-retry-timer nil
        meta-log-federation--sync-retry-delay nil
        meta-log-federation--sync-warned-errors nil)
  (clrhash meta-log-federation--sync-failing)
  (meta-log-federation--sync-update-mode-line))

(defun meta-log-federation--sync-report-failure (context err)
  "Report ERR, an error of sync while doing CONTEXT: a warning the first time."
  (let ((text (format "%s: %s" context (error-message-string err))))
    (meta-log-federation--log "sync: %s" text)
    (unless (member text meta-log-federation--sync-warned-errors)
      (push text meta-log-federation--sync-warned-errors)
      (display-warning 'meta-log-federation (format "CanvasL sync, %s" text) :warning))))

;;;; Mode line

(defun meta-log-federation-sync-problem ()
  "Return why sync is not working while federation is connected, or nil."
  (when (and (fboundp 'meta-log-federation-connected-p)
             (meta-log-federation-connected-p))
    (cond ((not (and (fboundp 'meta-log-federation-sync-running-p)
                     (meta-log-federation-sync-running-p)))
           (format "CanvasL sync is not running%s"
                   (if meta-log-federation--sync-start-error
                       (format ": %s" meta-log-federation--sync-start-error)
                     "")))
          ((> (hash-table-count meta-log-federation--sync-failing) 0)
           (format "%d shared file(s) cannot be written; retrying"
                   (hash-table-count meta-log-federation--sync-failing))))))

(defun meta-log-federation-sync-mode-line-problem ()
  "Return the mode line mark of a sync problem: \" Sync!\", or \"\"."
  (let ((problem (meta-log-federation-sync-problem)))
    (if problem
        (propertize " Sync!" 'face 'warning
                    'help-echo (concat problem "; mouse-1: sync status")
                    'mouse-face 'mode-line-highlight
                    'local-map (make-mode-line-mouse-map
                                'mouse-1 #'meta-log-federation-sync-status))
      "")))

(defun meta-log-federation--sync-update-mode-line ()
  "Redisplay the mode lines (the sync mark may have changed)."
  (force-mode-line-update t))

;;;; The status buffer

(defun meta-log-federation--sync-time (time)
  "Describe TIME (Unix seconds or nil) for the status buffer."
  (if time
      (format "%s (%s ago)"
              (format-time-string "%F %T" time)
              (let ((s (max 0 (- (float-time) time))))
                (cond ((< s 120) (format "%ds" s))
                      ((< s 7200) (format "%dmin" (/ s 60)))
                      (t (format "%dh" (/ s 3600))))))
    "never"))

(defun meta-log-federation--sync-status-insert ()
  "Insert the status of every share in the current buffer."
  (let ((inhibit-read-only t))
    (erase-buffer)
    (if (not (meta-log-federation-sync-running-p))
        (insert (or (meta-log-federation-sync-problem) "CanvasL sync is not running.") "\n")
      (let* ((r (meta-log-federation--sync-status))
             (shares (car r)))
        (meta-log-federation--sync-run-actions (cdr r))
        (insert (format "CanvasL sync: %d share(s), %d write(s) waiting to be retried%s\n\n"
                        (length shares)
                        (meta-log-federation--sync-pending-writes)
                        (if (timerp meta-log-federation--sync-retry-timer)
                            (format " (next retry in %ss)"
                                    (round (max 0 (timer-until meta-log-federation--sync-retry-timer
                                                             (current-time)))))
                          "")))
        (dolist (s shares)
          (insert (propertize (plist-get s :url) 'face 'bold) "\n")
          (insert (format "  file:          %s\n" (plist-get s :path)))
          (insert (format "  state:         %s%s\n" (plist-get s :state)
                          (pcase (plist-get s :state)
                            ('rebuilding " (waiting for a peer's version to merge the file into)")
                            ('rebuilt " (merged with the peers' version)")
                            (_ ""))))
          (when (plist-get s :kept-aside)
            (insert (format "  damaged state kept as: %s\n" (plist-get s :kept-aside))))
          (insert (format "  last sent:     %s\n"
                          (meta-log-federation--sync-time (plist-get s :last-sent))))
          (insert (format "  last received: %s\n"
                          (meta-log-federation--sync-time (plist-get s :last-received))))
          (insert (format "  pending write: %s\n"
                          (pcase (plist-get s :pending-write)
                            (`(,file ,msg) (format "%s (%d failed attempt(s)): %s"
                                                   file (plist-get s :write-attempts) msg))
                            (_ "none"))))
          (insert (format "  errors:        %s\n\n"
                          (if (plist-get s :errors)
                              (mapconcat #'identity (plist-get s :errors) "\n                 ")
                            "none"))))))
    (goto-char (point-min))))

(define-derived-mode meta-log-federation-sync-status-mode special-mode "Sync-Status"
  "Major mode of the CanvasL sync status buffer; \\[revert-buffer] refreshes it."
  (setq-local revert-buffer-function
              (lambda (_ignore-auto _noconfirm) (meta-log-federation--sync-status-insert))))

(defun meta-log-federation-sync-status ()
  "Show how each shared CanvasL file is doing.
For each share: healthy, or rebuilding/rebuilt after its merge state
was damaged or missing (and where the damaged file was kept), when data
last went out and came in, a write waiting to be retried, and the last
errors.  \\<meta-log-federation-sync-status-mode-map>\\[revert-buffer] refreshes."
  (interactive)
  (let ((buffer (get-buffer-create "*meta-log-federation sync*")))
    (with-current-buffer buffer
      (meta-log-federation-sync-status-mode)
      (meta-log-federation--sync-status-insert))
    (when (called-interactively-p 'interactive)
      (pop-to-buffer buffer))
    buffer))

(provide 'meta-log-federation-sync-status)
;;; meta-log-federation-sync-status.el ends here
