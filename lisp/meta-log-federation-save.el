;;; meta-log-federation-save.el --- Saves and remote changes of shared buffers, written by the worker  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; The edit path off Emacs' main thread (see src/sync/save.rs).
;;
;; Saving: a buffer visiting a shared file whose changes are tracked
;; (meta-log-federation-patch.el) is not written by Emacs.  Its entry in
;; `write-contents-functions' hands the changed lines to the session's
;; worker, with the text the buffer started from and a save number, and
;; returns at once; the buffer is then unmodified and Emacs makes no
;; "changed on disk" check until the worker says the file holds the
;; saved text (the `saved' event).  If the worker cannot write the file
;; (the edit is kept in the merge state and sent to the peers all the
;; same), the buffer is marked modified again and a warning says why; if it
;; cannot trust the changed lines, the buffer is saved again the usual
;; way (Emacs writes it, and the worker takes the whole file in).
;;
;; Receiving: changes merged into a held share come as hunks from the
;; text the buffer shows (the `held-change' event).  An unmodified
;; buffer is patched in place and asks the worker to write that text; a
;; modified one is left alone (its next save merges the changes).  The
;; `offer-written' event says the file holds it.

;;; Code:

(require 'cl-lib)
(require 'meta-log-federation-custom)
(require 'meta-log-federation-patch)

(declare-function meta-log-federation--sync-save-lines "meta-log-federation-module")
(declare-function meta-log-federation--sync-saved-file "meta-log-federation-module")
(declare-function meta-log-federation--sync-write-offered "meta-log-federation-module")
(declare-function meta-log-federation--sync-reoffer "meta-log-federation-module")
(declare-function meta-log-federation--buffer-share "meta-log-federation-sync")
(declare-function meta-log-federation--sync-set-hold "meta-log-federation-sync")
(declare-function meta-log-federation--sync-flush "meta-log-federation-sync")
(declare-function meta-log-federation--log "meta-log-federation-node")
(declare-function meta-log-federation-dispatch-pending "meta-log-federation-events")
(declare-function meta-log-federation--run-hook-safely "meta-log-federation-node")
(defvar meta-log-federation-canvasl-updated-functions)
(defvar meta-log-federation-canvasl-held-functions)

(defcustom meta-log-federation-save-on-worker t
  "If non-nil, saves of shared buffers are written by the sync worker.
Emacs then hands the changed lines over and goes on at once, whatever
the size of the file.  If nil, Emacs writes the file itself and the
worker takes it in afterwards."
  :type 'boolean
  :group 'meta-log-federation)

(defvar meta-log-federation-canvasl-saved-functions nil
  "Functions called with (FILE SHARE-URL) once the sync worker wrote a save.
A save of a shared buffer returns before its file is written; code that
reads the file after a save waits for this.")

(defvar meta-log-federation--save-counter 0
  "The number of the last save handed to the sync worker (all buffers).")

(defvar meta-log-federation--save-buffers (make-hash-table :test #'eql)
  "Save number -> buffer, for the saves the worker has not answered yet.")

(defvar meta-log-federation--save-normally nil
  "Non-nil while a save must be written by Emacs itself.")

(defvar-local meta-log-federation--save-pending nil
  "Number of this buffer's last save the worker has not answered yet.")

(defvar-local meta-log-federation--save-by-worker nil
  "Non-nil from the hand-over of a save until `after-save-hook' ran.")

(defvar-local meta-log-federation--save-base-version nil
  "Version of the file's text this buffer started from, as the worker named it.")

(defvar-local meta-log-federation--save-base-seq nil
  "Number of the save whose text this buffer started from.
Set until the worker's `saved' for it arrives.")

(defvar-local meta-log-federation--save-offer nil
  "Version of the offered text this buffer shows and the worker is writing.")

;;;; Saving

(defun meta-log-federation--save-on-worker ()
  "Hand the current buffer's save to the sync worker; non-nil if done.
From `write-contents-functions': Emacs does not write the file then.
Nil (Emacs writes it) when the buffer's changes are not tracked or the
module cannot take them."
  (let* ((url (and meta-log-federation-save-on-worker
                   (not meta-log-federation--save-normally)
                   (fboundp 'meta-log-federation--sync-save-lines)
                   (not (buffer-base-buffer))
                   (meta-log-federation--buffer-share)))
         (edit (and url (meta-log-federation--patch-edit)))
         (seq (and edit (1+ meta-log-federation--save-counter))))
    (when (and edit
               (condition-case err
                   (progn
                     (meta-log-federation--sync-save-lines
                      url (nth 0 edit) (nth 1 edit) (nth 2 edit)
                      meta-log-federation--patch-base-mtime
                      meta-log-federation--save-base-version
                      meta-log-federation--save-base-seq seq)
                     t)
                 ;; The text cannot be handed over (say, raw bytes): Emacs writes it.
                 (error
                  (meta-log-federation--log "the save of %s goes the usual way: %s"
                                            (buffer-name) (error-message-string err))
                  nil)))
      (setq meta-log-federation--save-counter seq)
      (meta-log-federation--save-handed-over seq)
      (unless save-silently
        (message "Saved %s (the sync worker writes the file)" (buffer-name)))
      t)))

(defun meta-log-federation--save-handed-over (seq)
  "Note that save SEQ of the current buffer was handed to the worker.
Do what `write-region' would have done to the buffer."
  (puthash seq (current-buffer) meta-log-federation--save-buffers)
  (setq meta-log-federation--save-pending seq
        meta-log-federation--save-by-worker t)
  ;; No "changed on disk" check until the worker says the file is written.
  (clear-visited-file-modtime)
  (set-buffer-modified-p nil)
  ;; `basic-save-buffer' sets the buffer's coding system from this after a save.
  (setq buffer-saved-size (buffer-size)
        last-coding-system-used buffer-file-coding-system)
  ;; The next edit is tracked from the saved text, known by this save's number.
  (meta-log-federation--patch-reset)
  (setq meta-log-federation--save-base-version nil
        meta-log-federation--save-base-seq seq))

(defun meta-log-federation--save-written-by-emacs (url)
  "Hand the save Emacs just wrote of this buffer, shared as URL, to the worker.
The worker takes the whole file in; the buffer's next save starts from it."
  (let ((seq (cl-incf meta-log-federation--save-counter)))
    (meta-log-federation--sync-saved-file url seq)
    (puthash seq (current-buffer) meta-log-federation--save-buffers)
    (setq meta-log-federation--save-pending seq)
    (when meta-log-federation-patch-buffers
      (meta-log-federation--patch-reset))
    (setq meta-log-federation--save-base-version nil
          meta-log-federation--save-base-seq seq)))

(defun meta-log-federation--save-time (mtime)
  "Return MTIME, \"SECONDS.NANOSECONDS\", as a Lisp timestamp."
  (let ((parts (split-string mtime "\\.")))
    (cons (+ (* (string-to-number (car parts)) 1000000000)
             (string-to-number (cadr parts)))
          1000000000)))

(defun meta-log-federation--save-in-step (mtime)
  "Note that the current buffer's file was written at MTIME with the buffer's base."
  (when (and mtime buffer-file-name)
    (set-visited-file-modtime (meta-log-federation--save-time mtime))
    (setq buffer-file-number (nthcdr 10 (file-attributes buffer-file-name))))
  (setq meta-log-federation--patch-base-mtime mtime))

(defun meta-log-federation--save-on-saved (seq version mtime)
  "Note that the worker wrote save SEQ: the file has text VERSION since MTIME."
  (let ((buffer (gethash seq meta-log-federation--save-buffers)))
    (remhash seq meta-log-federation--save-buffers)
    (when (buffer-live-p buffer)
      (with-current-buffer buffer
        (when (eql meta-log-federation--save-pending seq)
          (setq meta-log-federation--save-pending nil
                meta-log-federation--save-base-version version
                meta-log-federation--save-base-seq nil)
          ;; The file holds the saved text, the buffer's base: Emacs may check it again.
          (meta-log-federation--save-in-step mtime)))
      (meta-log-federation--run-hook-safely
       'meta-log-federation-canvasl-saved-functions
       (buffer-file-name buffer) (meta-log-federation--save-url buffer)))))

(defun meta-log-federation--save-url (buffer)
  "Return the share URL of BUFFER's file, or nil."
  (with-current-buffer buffer (meta-log-federation--buffer-share)))

(defun meta-log-federation--save-on-not-taken (url seq reason failed)
  "The worker did not take save SEQ of URL, for REASON; FAILED: the write failed.
The buffer is marked modified again: never a silently unsaved buffer."
  (let ((buffer (gethash seq meta-log-federation--save-buffers)))
    (remhash seq meta-log-federation--save-buffers)
    (when (buffer-live-p buffer)
      (with-current-buffer buffer
        (let ((typed-since (buffer-modified-p)))
          (when (eql meta-log-federation--save-pending seq)
            (setq meta-log-federation--save-pending nil))
          ;; The file does not hold the save: its changes are no longer tracked,
          ;; and the next save hands over the whole file.
          (setq meta-log-federation--save-base-version nil
                meta-log-federation--save-base-seq nil
                meta-log-federation--patch-span nil)
          (set-buffer-modified-p t)
          (cond
           (failed
            (display-warning
             'meta-log-federation
             (format "%s was not saved to its file: %s.  The edit is kept in the merge state and went to the peers; the buffer is marked modified: save it again once this is fixed."
                     (buffer-name) reason)
             :error))
           (typed-since
            (meta-log-federation--log "the save of %s was not taken (%s); saved with the next save"
                                      (buffer-name) reason)
            (message "%s: not saved (%s); save it again" (buffer-name) reason))
           (t
            (meta-log-federation--log "the save of %s was not taken by %s (%s); saved the usual way"
                                      (buffer-name) url reason)
            (let ((meta-log-federation--save-normally t))
              (save-buffer)))))))))

;;;; Receiving

(defun meta-log-federation--save-take-offer-p ()
  "Return non-nil if the current buffer may show an offered text now.
It has no unsaved edits and no save on its way."
  (and (not (buffer-modified-p))
       (null meta-log-federation--save-pending)))

(defun meta-log-federation--save-on-held-change (url file from version hunks)
  "Patch FILE's buffer with what was merged into the held share URL, if it may.
HUNKS turn text FROM into text VERSION.  An unmodified buffer showing
FROM is patched and the worker asked to write VERSION; a modified one
is left alone: its next save merges the changes."
  (let ((buffer (find-buffer-visiting file)))
    (cond
     ((null buffer)
      (meta-log-federation--sync-set-hold url nil))
     ((with-current-buffer buffer (meta-log-federation--save-take-offer-p))
      (with-current-buffer buffer
        (if (and meta-log-federation-patch-buffers hunks
                 ;; The hunks start from text FROM: a buffer that started from
                 ;; another text is not patched with them.
                 (or (null meta-log-federation--save-base-version)
                     (eql meta-log-federation--save-base-version from))
                 (meta-log-federation--patch-apply hunks file 'offered))
            (progn
              (cl-incf (nth 0 meta-log-federation-patch-counts))
              (when meta-log-federation--patch-span
                (meta-log-federation--patch-reset))
              (setq meta-log-federation--save-offer version
                    meta-log-federation--save-base-version version
                    meta-log-federation--save-base-seq nil)
              (meta-log-federation--sync-write-offered url version))
          ;; No hunks, or they do not fit this buffer: the file is written and
          ;; the buffer patched or reverted in one step on this thread (rare),
          ;; so that nothing typed in between could start from a text the
          ;; buffer never showed.
          (meta-log-federation--save-forget)
          (meta-log-federation--sync-flush url))))
     (t
      (meta-log-federation--run-hook-safely
       'meta-log-federation-canvasl-held-functions file url)))))

(defun meta-log-federation--save-on-offer-written (url file version mtime)
  "The worker wrote the offered text VERSION of URL to FILE, at MTIME."
  (let ((buffer (find-buffer-visiting file)))
    (when buffer
      (with-current-buffer buffer
        (when (eql meta-log-federation--save-offer version)
          (setq meta-log-federation--save-offer nil)
          (meta-log-federation--save-in-step mtime))))
    (meta-log-federation--run-hook-safely
     'meta-log-federation-canvasl-updated-functions file url nil)))

(defun meta-log-federation--save-write-failed (file)
  "Mark FILE's buffer modified if its offered text could not be written."
  (let ((buffer (find-buffer-visiting file)))
    (when buffer
      (with-current-buffer buffer
        (when meta-log-federation--save-offer
          (setq meta-log-federation--save-offer nil
                meta-log-federation--save-base-version nil
                meta-log-federation--patch-span nil)
          (set-buffer-modified-p t))))))

(defun meta-log-federation--save-reoffer (url)
  "Ask for what is held for URL again, now this buffer is in step with its file."
  (setq meta-log-federation--save-base-version nil
        meta-log-federation--save-base-seq nil)
  (meta-log-federation--sync-reoffer url))

(defun meta-log-federation--save-forget ()
  "Forget what the worker told this buffer, now in step with its file (reverted)."
  (setq meta-log-federation--save-base-version nil
        meta-log-federation--save-base-seq nil
        meta-log-federation--save-offer nil))

(defun meta-log-federation--save-abandon-pending ()
  "Settle what the worker has not answered yet, as sync stops.
The worker wrote them before it closed; their answers are dispatched
now.  A buffer whose answer is still missing is marked modified: it
must not look saved when its file might lack its text."
  (when (fboundp 'meta-log-federation-dispatch-pending)
    (meta-log-federation-dispatch-pending))
  (maphash (lambda (_seq buffer)
             (when (buffer-live-p buffer)
               (with-current-buffer buffer
                 (setq meta-log-federation--save-pending nil
                       meta-log-federation--save-base-version nil
                       meta-log-federation--save-base-seq nil
                       meta-log-federation--patch-span nil)
                 (set-buffer-modified-p t))))
           meta-log-federation--save-buffers)
  (clrhash meta-log-federation--save-buffers))

(provide 'meta-log-federation-save)
;;; meta-log-federation-save.el ends here
