;;; meta-log-federation-patch.el --- Shared files synced by the lines that changed  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; Sync that costs the edit, not the file, on both sides of a save.
;;
;; Sending: from the first change of a buffer visiting a shared file,
;; `after-change-functions' records the span of text that changed (two
;; markers).  On save only the lines of that span are handed to the
;; session's worker (meta-log-federation-save.el), with the text the
;; buffer started from; the engine checks both against the file it
;; knows and otherwise the buffer is saved the usual way.  A
;; buffer whose record cannot be trusted (coding system not plain
;; UTF-8 with Unix line ends, tracking started late) sends the whole
;; file.
;;
;; Receiving: an update of a shared file carries hunks (see
;; src/sync/hunk.rs): a buffer visiting the file without unsaved edits
;; is patched in place, changed lines only.  Point, mark and window
;; starts are markers or saved positions and stay on their text; the
;; undo list is kept (the patch is one undoable step of its own); the
;; buffer stays unmodified and in step with the file.  When the hunks
;; are absent or do not fit the buffer, it is reverted as before.

;;; Code:

(require 'cl-lib)
(require 'meta-log-federation-custom)

(declare-function meta-log-federation--save-on-worker "meta-log-federation-save")
(declare-function meta-log-federation--buffer-share "meta-log-federation-sync")
(declare-function meta-log-federation--sync-refresh-buffer "meta-log-federation-sync")

(defcustom meta-log-federation-patch-buffers t
  "If non-nil, shared files are synced by the lines that changed.
Saves hand only the changed lines to the sync engine, and remote
changes patch the lines of a visiting buffer in place.  If nil, every
save hands over the whole file and every remote change reverts the
buffer."
  :type 'boolean
  :group 'meta-log-federation)

(defvar-local meta-log-federation--patch-span nil
  "What changed in this buffer since it was last in step with its file.
nil: not tracked (the whole file is sent); `clean': tracked, nothing
changed; (BEG . END): markers around every change.")

(defvar-local meta-log-federation--patch-base-mtime nil
  "Modification time (\"SECONDS.NANOSECONDS\") of the file the buffer started from.")

(defvar meta-log-federation-patch-counts (list 0 0)
  "Remote updates shown in visiting buffers: (PATCHED REVERTED).")

(defvar meta-log-federation--patch-applying nil
  "Non-nil while a remote patch is being applied (not a change of the user's).")

;;;; Recording the changed span

(defun meta-log-federation--patch-mtime-string ()
  "Return the current buffer's visited file time as \"SECONDS.NANOSECONDS\"."
  (let ((mt (visited-file-modtime)))
    (and (not (memq mt '(0 -1))) mt
         (format-time-string "%s.%N" mt))))

(defun meta-log-federation--patch-coding-ok-p ()
  "Return non-nil if the buffer is saved as UTF-8 with Unix line ends.
Only then are the buffer's characters the file's bytes, line for line."
  (and enable-multibyte-characters
       (null buffer-file-format)
       (eq (coding-system-eol-type buffer-file-coding-system) 0)
       (memq (coding-system-base buffer-file-coding-system)
             '(utf-8 undecided prefer-utf-8 us-ascii))))

(defun meta-log-federation--patch-reset ()
  "Start tracking afresh: the buffer is in step with its file."
  (when (consp meta-log-federation--patch-span)
    (set-marker (car meta-log-federation--patch-span) nil)
    (set-marker (cdr meta-log-federation--patch-span) nil))
  (setq meta-log-federation--patch-span 'clean
        meta-log-federation--patch-base-mtime (meta-log-federation--patch-mtime-string))
  (add-hook 'after-change-functions #'meta-log-federation--patch-record nil t)
  ;; A tracked buffer's saves go to the sync worker.
  (add-hook 'write-contents-functions #'meta-log-federation--save-on-worker nil t))

(defun meta-log-federation--patch-track ()
  "Track the edits of a shared buffer, from `first-change-hook'.
The buffer has no unsaved edits yet, so it shows its file."
  (when (and meta-log-federation-patch-buffers
             (not meta-log-federation--patch-applying)
             (not (buffer-modified-p))
             (meta-log-federation--buffer-share))
    (meta-log-federation--patch-reset)))

(defun meta-log-federation--patch-record (beg end _old-len)
  "Widen the recorded span to hold the change between BEG and END."
  (unless (or meta-log-federation--patch-applying (null meta-log-federation--patch-span))
    (let ((span meta-log-federation--patch-span))
      (if (eq span 'clean)
          (let ((b (copy-marker beg nil))
                (e (copy-marker end t)))
            (setq meta-log-federation--patch-span (cons b e)))
        (when (< beg (car span)) (set-marker (car span) beg))
        (when (> end (cdr span)) (set-marker (cdr span) end))))))

(defun meta-log-federation--patch-edit ()
  "Return the recorded change as (HEAD TAIL MIDDLE), or nil if not trusted.
HEAD and TAIL are the bytes of the unchanged lines at the top and
bottom (byte positions cost nothing, unlike counting lines); MIDDLE is
the text of the lines between them."
  (let ((span meta-log-federation--patch-span))
    ;; Which text the buffer started from is the engine's to check (the file
    ;; time, or what the worker said: see meta-log-federation-save.el).
    (when (and meta-log-federation-patch-buffers
               (meta-log-federation--patch-coding-ok-p))
      (save-restriction
        (widen)
        (if (eq span 'clean)
            (list 0 (1- (position-bytes (point-max))) "")
          (when (consp span)
            (save-excursion
              (let* ((beg (progn (goto-char (car span)) (line-beginning-position)))
                     ;; The line ending at or after the last change is in the middle:
                     ;; what follows it is unchanged and starts a line in both texts.
                     (end (progn (goto-char (cdr span))
                                 (if (search-forward "\n" nil t) (point) (point-max)))))
                (list (1- (position-bytes beg))
                      (- (position-bytes (point-max)) (position-bytes end))
                      (buffer-substring-no-properties beg end))))))))))

;;;; Applying a remote patch

(defun meta-log-federation--patch-positions (hunks)
  "Return the start position of each of HUNKS in the current buffer, or nil.
Each hunk says at which byte of the old file its lines start: in a
buffer showing that file, that is a byte position (no line counting).
Nil when a hunk's old lines are not the buffer's text there."
  (save-restriction
    (widen)
    (let ((out nil) (ok t) (last 0))
      (cl-loop for h across hunks
               while ok
               do (let* ((byte (1+ (aref h 4)))
                         (old (aref h 3))
                         (p (byte-to-position byte)))
                    (if (and p (> p last)
                             (= (position-bytes p) byte)
                             (or (= p (point-min)) (eq (char-before p) ?\n))
                             (<= (+ p (length old)) (point-max))
                             (string= old (buffer-substring-no-properties
                                           p (+ p (length old)))))
                        (progn (push p out) (setq last p))
                      (setq ok nil))))
      (and ok (nreverse out)))))

(defun meta-log-federation--patch-apply (hunks file &optional offered)
  "Patch the current buffer with HUNKS, the change that made FILE.
Return non-nil if done.
Does nothing and returns nil when they do not fit.  With OFFERED, FILE
does not hold the new text yet (the sync worker writes it next): Emacs
makes no \"changed on disk\" check until it says so."
  (let ((positions (and (vectorp hunks)
                        (meta-log-federation--patch-coding-ok-p)
                        (meta-log-federation--patch-positions hunks))))
    (when positions
      (let ((inhibit-read-only t)
            (meta-log-federation--patch-applying t)
            ;; Not an edit of the user's: no hold, no lock file.
            (first-change-hook nil)
            (create-lockfiles nil))
        ;; The buffer is about to show the file as it now is (or will be): no
        ;; "changed on disk" question for this edit.
        (if offered (clear-visited-file-modtime) (set-visited-file-modtime))
        (undo-boundary)
        (save-excursion
          (save-restriction
            (widen)
            ;; Bottom-up: earlier positions stay valid.
            (cl-loop for h across (reverse hunks)
                     for p in (reverse positions)
                     do (let ((old-end (+ p (length (aref h 3)))))
                          (goto-char p)
                          ;; Insert first, then delete: markers at the old text's end
                          ;; (point saved above, other windows' points) stay after it.
                          (insert (aref h 2))
                          (delete-region (point) (+ (point) (- old-end p)))))))
        (undo-boundary)
        (set-buffer-modified-p nil)
        (or offered
            (progn
              (set-visited-file-modtime)
              (let ((size (file-attribute-size (file-attributes file))))
                (and size (= size (1- (position-bytes (point-max))))))))))))

(defun meta-log-federation--patch-refresh-buffer (file hunks)
  "Show FILE's new contents in the buffer visiting it, from HUNKS if they fit.
A buffer with unsaved edits is left alone (it holds the file).  Without
hunks, or when they do not fit, the buffer is reverted."
  (let ((buffer (find-buffer-visiting file)))
    (when (and buffer (not (buffer-modified-p buffer)))
      (with-current-buffer buffer
        (if (and meta-log-federation-patch-buffers hunks
                 (meta-log-federation--patch-apply hunks file))
            (progn
              (cl-incf (nth 0 meta-log-federation-patch-counts))
              (when meta-log-federation--patch-span
                (meta-log-federation--patch-reset)))
          (cl-incf (nth 1 meta-log-federation-patch-counts))
          (meta-log-federation--sync-refresh-buffer file))))))

(defun meta-log-federation--patch-reverted ()
  "Restart tracking a shared buffer just reverted (from `after-revert-hook')."
  (when meta-log-federation--patch-span
    (meta-log-federation--patch-reset)))

(provide 'meta-log-federation-patch)
;;; meta-log-federation-patch.el ends here
