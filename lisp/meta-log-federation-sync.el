;;; meta-log-federation-sync.el --- Shared CanvasL files that merge concurrent edits  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; `meta-log-federation-share-canvasl' shares a CanvasL file with the
;; federation.  Every peer keeps the file as a CRDT document (automerge,
;; in the native module); saving the file in Emacs, or changing it on
;; disk while Emacs runs, sends only the changes, as signed events on
;; PREFIX/sync.  A peer that was offline, or joins late, catches up
;; through a request and a response, not by replaying old messages.
;;
;; Files shared by other peers arrive in `meta-log-federation-sync-directory'
;; under ORIGIN-PEER-ID/NAME, so a share is known as canvasl://ORIGIN/NAME
;; and two shares of the same name never overwrite each other.
;;
;; Buffers: a buffer visiting a synced file without unsaved edits shows
;; remote changes at once (point and window stay put).  A buffer with
;; unsaved edits is never overwritten; when the user saves it, the edits
;; are merged with the remote ones (relative to the text the buffer was
;; based on) and the buffer then shows the merged file.
;;
;; The module merges remote changes on its own thread.  So that a file
;; never changes under a buffer behind its back, a share whose file a
;; buffer visits is held: its remote changes are merged and saved, and
;; the module says so (`held-change'); Emacs then writes the file and
;; reverts the buffer in one go if it has no unsaved edits, or leaves
;; both for the save to merge if it has.

;;; Code:

(require 'cl-lib)
(require 'filenotify)
(require 'subr-x)
(require 'meta-log-federation-custom)
(require 'meta-log-federation-node)
(require 'meta-log-federation-patch)
(require 'meta-log-federation-save)
(require 'meta-log-federation-sync-status)

(declare-function meta-log-federation--sync-open "meta-log-federation-module")
(declare-function meta-log-federation--sync-share-members "meta-log-federation-module")
(declare-function meta-log-federation--sync-close "meta-log-federation-module")
(declare-function meta-log-federation--sync-running-p "meta-log-federation-module")
(declare-function meta-log-federation--sync-startup "meta-log-federation-module")
(declare-function meta-log-federation--sync-share "meta-log-federation-module")
(declare-function meta-log-federation--sync-share-background "meta-log-federation-module")
(declare-function meta-log-federation--sync-unshare "meta-log-federation-module")
(declare-function meta-log-federation--sync-shares "meta-log-federation-module")
(declare-function meta-log-federation--sync-share-list "meta-log-federation-module")
(declare-function meta-log-federation--sync-hold "meta-log-federation-module")
(declare-function meta-log-federation--sync-write-held "meta-log-federation-module")
(declare-function meta-log-federation--sync-file-touched "meta-log-federation-module")
(declare-function meta-log-federation--sync-offer "meta-log-federation-module")
(declare-function meta-log-federation--sync-catch-up "meta-log-federation-module")
(declare-function meta-log-federation--sync-conflicts "meta-log-federation-module")
(declare-function meta-log-federation--sync-refusals "meta-log-federation-module")
(declare-function meta-log-federation--sync-status "meta-log-federation-module")

(defcustom meta-log-federation-sync-directory
  (locate-user-emacs-file "meta-log/sync/")
  "Directory where canvases shared by other peers are kept.
Each arrives as ORIGIN-PEER-ID/NAME.  The environment variable
META_LOG_SYNC_DIRECTORY, when set, takes precedence."
  :type 'directory
  :group 'meta-log-federation)

(defcustom meta-log-federation-sync-state-directory
  (locate-user-emacs-file "meta-log/sync-state/")
  "Directory where the merge state (history) of each shared file is kept.
Keep it with the files: without it a restarted Emacs cannot merge."
  :type 'directory
  :group 'meta-log-federation)

(defcustom meta-log-federation-sync-watch-files t
  "If non-nil, changes made on disk to shared files by other programs are synced.
Saves from Emacs are synced in any case."
  :type 'boolean
  :group 'meta-log-federation)

(defvar meta-log-federation-canvasl-updated-functions nil
  "Functions called with (FILE SHARE-URL CREATED) after a remote update.
FILE has been written (atomically); CREATED is non-nil when the file is
new (a share just received).")

(defvar meta-log-federation-canvasl-held-functions nil
  "Functions called with (FILE SHARE-URL) when remote changes wait for a save.
A buffer visiting FILE has unsaved edits, so the changes merged from
the peers are written neither to FILE nor to the buffer; saving the
buffer merges both.  Called once until the file is written.")

(defvar meta-log-federation-sync-refused-functions nil
  "Functions called with (REASON DETAIL) when a sync message is refused.")

(defvar meta-log-federation--shared-files (make-hash-table :test #'equal)
  "Synced file (true name) -> share URL, for the save hook.")

(defvar meta-log-federation--sync-watches nil
  "File notification descriptors of the watched directories.")

(defvar meta-log-federation--sync-pending (make-hash-table :test #'equal)
  "Files changed on disk, waiting for the debounce timer.")

(defvar meta-log-federation--sync-timer nil
  "Timer that takes in files changed on disk.")

(defvar-local meta-log-federation--holding nil
  "Share URL whose file writes this buffer holds back while it visits the file.")

(defvar meta-log-federation--sync-flushing nil
  "Non-nil while a held share's changes are being written and shown.")

(defun meta-log-federation-sync-running-p ()
  "Return non-nil while CanvasL sync is running."
  (and (fboundp 'meta-log-federation--sync-running-p)
       (meta-log-federation--sync-running-p)))

(defun meta-log-federation--sync-require ()
  "Signal `meta-log-federation-not-running' unless sync is running."
  (meta-log-federation--require-running)
  (unless (meta-log-federation-sync-running-p)
    (signal 'meta-log-federation-not-running
            (list "CanvasL sync is not running: call `meta-log-federation-init' first"))))

(defun meta-log-federation--share-arg (file-or-url)
  "Return FILE-OR-URL as the engine takes it: a URL as is, a file expanded."
  (if (string-prefix-p "canvasl://" file-or-url)
      file-or-url
    (expand-file-name file-or-url)))

(defun meta-log-federation--sync-dir ()
  "Return the sync directory: the environment, else the option."
  (file-name-as-directory
   (expand-file-name (or (meta-log-federation--env "META_LOG_SYNC_DIRECTORY")
                         meta-log-federation-sync-directory))))

;;;; Actions the engine asks for

(defun meta-log-federation--sync-run-actions (actions)
  "Carry out ACTIONS returned by the sync engine; return them."
  (dolist (action actions)
    (pcase action
      (`(updated ,url ,file ,created . ,hunks)
       (puthash (file-truename file) url meta-log-federation--shared-files)
       (meta-log-federation--patch-refresh-buffer file (car hunks))
       (meta-log-federation--sync-watch (file-name-directory file))
       (when created
         (meta-log-federation--log "new shared canvas %s in %s" url (abbreviate-file-name file))
         (let ((buffer (find-buffer-visiting file)))
           (when buffer
             (with-current-buffer buffer (meta-log-federation--sync-visit)))))
       (meta-log-federation--run-hook-safely
        'meta-log-federation-canvasl-updated-functions file url created))
      (`(refused ,reason ,detail)
       (meta-log-federation--log "refused a sync message (%s): %s" reason detail)
       (meta-log-federation--run-hook-safely
        'meta-log-federation-sync-refused-functions reason detail))
      (`(warning ,url ,text)
       ;; The engine's text names no command: the advice is added here.
       (display-warning 'meta-log-federation
                        (concat (if url (format "%s: %s" url text) text)
                                "  M-x meta-log-federation-sync-status shows the shares' state.")
                        :warning))
      (`(write-failed ,url ,file ,text ,attempt)
       (meta-log-federation--sync-write-failed url file text attempt))))
  ;; The session follows the shares' own topics itself (see
  ;; `Shared::follow_share_topics'): nothing to subscribe here.
  actions)

(defun meta-log-federation--sync-refresh-buffer (file)
  "Show FILE's new contents in the buffer visiting it, unless it has unsaved edits.
A buffer with unsaved edits holds the file (see
`meta-log-federation--sync-first-change'), so this normally only meets
unmodified buffers."
  (let ((buffer (find-buffer-visiting file)))
    (when (and buffer (not (buffer-modified-p buffer)))
      (with-current-buffer buffer
        ;; Reverting replaces only what differs: point and window-start stay.
        (let ((inhibit-message t))
          (revert-buffer t t t))))))

;;;; Receiving

;; The module's session merges remote changes and writes the files on
;; its own thread; Emacs receives one finished event per outcome and
;; only touches buffers and runs hooks.

(defun meta-log-federation--sync-on-event (event)
  "Carry out the session's sync EVENT on the main thread.
EVENT is [file-updated URL FILE CREATED HUNKS], [sync-refused REASON
DETAIL], [sync-warning URL-OR-NIL MESSAGE], [write-failed URL FILE
MESSAGE ATTEMPT], or one of the edit path's (see
meta-log-federation-save.el): [saved URL FILE SEQ VERSION MTIME],
[save-not-taken URL FILE SEQ REASON FAILED], [held-change URL FILE FROM
VERSION HUNKS] and [offer-written URL FILE VERSION MTIME]."
  (pcase (aref event 0)
    ('file-updated
     ;; After a stop, a late update has no table of shared files to join.
     (when (meta-log-federation-sync-running-p)
       (meta-log-federation--sync-run-actions
        (list (list 'updated (aref event 1) (aref event 2) (aref event 3)
                    (aref event 4))))))
    ('saved
     (meta-log-federation--save-on-saved (aref event 3) (aref event 4) (aref event 5)))
    ('save-not-taken
     (meta-log-federation--save-on-not-taken (aref event 1) (aref event 3) (aref event 4)
                                             (aref event 5)))
    ('offer-written
     (when (meta-log-federation-sync-running-p)
       (meta-log-federation--save-on-offer-written (aref event 1) (aref event 2)
                                                   (aref event 3) (aref event 4))))
    ('sync-refused
     (meta-log-federation--sync-run-actions
      (list (list 'refused (aref event 1) (aref event 2)))))
    ('sync-warning
     (meta-log-federation--sync-run-actions
      (list (list 'warning (aref event 1) (aref event 2)))))
    ('write-failed
     (meta-log-federation--save-write-failed (aref event 2))
     (meta-log-federation--sync-run-actions
      (list (list 'write-failed (aref event 1) (aref event 2) (aref event 3)
                  (aref event 4)))))
    ('held-change
     (when (meta-log-federation-sync-running-p)
       (meta-log-federation--save-on-held-change (aref event 1) (aref event 2) (aref event 3)
                                                 (aref event 4) (aref event 5))))))

(defun meta-log-federation--sync-set-hold (url hold)
  "Hold (HOLD non-nil) or release the file writes of share URL.
Return the engine's actions after carrying them out; report an error
instead of signalling it."
  (condition-case err
      (meta-log-federation--sync-run-actions (meta-log-federation--sync-hold url hold))
    (meta-log-federation-error
     (meta-log-federation--log "sync: %s" (error-message-string err))
     nil)))

(defun meta-log-federation--sync-flush (url)
  "Write what was held back of URL and show it in this unmodified buffer.
The hold is taken again at once: the buffer still visits the file."
  (unless meta-log-federation--sync-flushing
    (let ((meta-log-federation--sync-flushing t))
      ;; One step in the module: the worker cannot write between the two.
      (condition-case err
          (meta-log-federation--sync-run-actions (meta-log-federation--sync-write-held url))
        (meta-log-federation-error
         (meta-log-federation--log "sync: %s" (error-message-string err))))
      (setq meta-log-federation--holding url))))

(dolist (type '(file-updated sync-refused sync-warning write-failed held-change
                saved save-not-taken offer-written))
  (meta-log-federation--on-event type #'meta-log-federation--sync-on-event))

;;;; Local changes

(defun meta-log-federation--buffer-share ()
  "Return the share URL of the current buffer's file, or nil."
  (and buffer-file-name
       (meta-log-federation-sync-running-p)
       (gethash (file-truename buffer-file-name) meta-log-federation--shared-files)))

(defun meta-log-federation--sync-first-change ()
  "Hold the shared file while this buffer visits it (and has unsaved edits).
Remote changes are then merged in the background but not written over
the file; the user's save is merged relative to the text the buffer
started from, so neither side's edits are lost."
  (let ((url (meta-log-federation--buffer-share)))
    (when url
      (condition-case err
          (progn
            (meta-log-federation--sync-run-actions (meta-log-federation--sync-hold url t))
            (setq meta-log-federation--holding url))
        (meta-log-federation-error
         (meta-log-federation--log "sync: %s" (error-message-string err)))))))

(defun meta-log-federation--sync-visit ()
  "Hold the shared file this buffer has just visited.
If the module wrote the file between the visit's read and the hold,
the buffer shows it at once (it has no edits yet)."
  (when (meta-log-federation--buffer-share)
    (meta-log-federation--sync-first-change)
    (when (and meta-log-federation--holding (not (buffer-modified-p)))
      (if (verify-visited-file-modtime)
          ;; Changes held for an earlier buffer are offered to this one.
          (meta-log-federation--save-reoffer meta-log-federation--holding)
        ;; Reverting asks for them too (`after-revert-hook').
        (let ((inhibit-message t))
          (revert-buffer t t t))))))

(defun meta-log-federation--sync-release ()
  "Offer what was held back again, now that this buffer was reverted.
The changes are offered again (`held-change'); the hold stays while the
buffer visits the file."
  (meta-log-federation--save-forget)
  (when (and meta-log-federation--holding (not (buffer-modified-p))
             (meta-log-federation-sync-running-p))
    (meta-log-federation--save-reoffer meta-log-federation--holding)))

(defun meta-log-federation--sync-kill-buffer ()
  "Release the hold of a buffer being killed (its edits are abandoned)."
  (when (and meta-log-federation--holding (meta-log-federation-sync-running-p))
    (let ((url meta-log-federation--holding))
      (setq meta-log-federation--holding nil)
      (ignore-errors (meta-log-federation--sync-hold url nil)))))

(defun meta-log-federation--sync-after-save ()
  "Sync the file just saved if it is shared; keep holding it.
A save the worker writes was handed over already; one Emacs wrote is
taken in by the worker, merged with the changes held back, which are
then offered to the buffer."
  (let ((url (meta-log-federation--buffer-share)))
    (cond
     ((null url))
     (meta-log-federation--save-by-worker
      ;; Handed to the worker (`meta-log-federation--save-on-worker'): done.
      (setq meta-log-federation--save-by-worker nil))
     (t
      (condition-case err
          ;; Emacs wrote the file: the worker takes it in, the share held.
          (meta-log-federation--save-written-by-emacs url)
        (meta-log-federation-error
         (meta-log-federation--sync-report-failure
          (format "syncing the save of %s" (buffer-name)) err)))
      (setq meta-log-federation--holding url)))))

(defun meta-log-federation--sync-watch (directory)
  "Watch DIRECTORY: other programs may edit shared files there."
  (when (and meta-log-federation-sync-watch-files
             (file-directory-p directory)
             (not (assoc directory meta-log-federation--sync-watches)))
    (condition-case nil
        (push (cons directory
                    (file-notify-add-watch directory '(change)
                                           #'meta-log-federation--sync-notified))
              meta-log-federation--sync-watches)
      (file-notify-error nil))))

(defun meta-log-federation--sync-notified (event)
  "Note a file notification EVENT; take the file in shortly after."
  (let ((file (nth 2 event)))
    (when (and (stringp file)
               (memq (nth 1 event) '(changed created renamed))
               (gethash (file-truename (if (eq (nth 1 event) 'renamed) (nth 3 event) file))
                        meta-log-federation--shared-files))
      (puthash (if (eq (nth 1 event) 'renamed) (nth 3 event) file) t
               meta-log-federation--sync-pending)
      (unless (timerp meta-log-federation--sync-timer)
        (setq meta-log-federation--sync-timer
              (run-at-time 0.2 nil #'meta-log-federation--sync-take-pending))))))

(defun meta-log-federation--sync-take-pending ()
  "Take in the files changed on disk."
  (setq meta-log-federation--sync-timer nil)
  (when (meta-log-federation-sync-running-p)
    (maphash
     (lambda (file _)
       (let ((buffer (find-buffer-visiting file)))
         ;; A modified buffer is merged when it is saved; the file is
         ;; taken in by the engine before any remote change is written.
         (unless (and buffer (buffer-modified-p buffer))
           (condition-case err
               ;; On the worker, which ignores its own writes (they notify too);
               ;; a visiting buffer keeps its hold through the take-in.
               (meta-log-federation--sync-file-touched file (and buffer t))
             (meta-log-federation-error
              (meta-log-federation--log "sync %s: %s" file (error-message-string err)))))))
     meta-log-federation--sync-pending))
  (clrhash meta-log-federation--sync-pending))

;;;; Starting and stopping with federation

(defun meta-log-federation--sync-refresh-shared-files ()
  "Rebuild the table of shared files from the engine."
  (clrhash meta-log-federation--shared-files)
  (dolist (share (meta-log-federation--sync-share-list))
    (when (plist-get share :active)
      (let ((file (plist-get share :path)))
        (puthash (file-truename file) (plist-get share :url) meta-log-federation--shared-files)
        (meta-log-federation--sync-watch (file-name-directory file))))))

(defconst meta-log-federation--sync-hooks
  '((after-save-hook . meta-log-federation--sync-after-save)
    (first-change-hook . meta-log-federation--sync-first-change)
    (first-change-hook . meta-log-federation--patch-track)
    (after-revert-hook . meta-log-federation--patch-reverted)
    (find-file-hook . meta-log-federation--sync-visit)
    (after-revert-hook . meta-log-federation--sync-release)
    (kill-buffer-hook . meta-log-federation--sync-kill-buffer)
    (meta-log-federation-mqtt-connected-hook . meta-log-federation--sync-on-connect)
    (meta-log-federation-connect-peer-functions . meta-log-federation--sync-with-peer)
    (meta-log-federation-link-down-functions . meta-log-federation--sync-after-link-down)
    (meta-log-federation-peer-online-functions . meta-log-federation--sync-offer-to))
  "Hooks that sync adds its functions to while it runs: (HOOK . FUNCTION).")

(defun meta-log-federation--sync-start ()
  "Open the sync engine for the running federation and catch up."
  (let ((sync-dir (meta-log-federation--sync-dir))
        (state-dir (file-name-as-directory
                    (expand-file-name meta-log-federation-sync-state-directory))))
    (setq meta-log-federation--sync-start-error nil)
    (condition-case err
        (meta-log-federation--sync-open sync-dir state-dir meta-log-federation-max-event-size)
      (meta-log-federation-error
       ;; Federation goes on; the mode line and the status say sync does not.
       (setq meta-log-federation--sync-start-error (error-message-string err))
       (display-warning 'meta-log-federation
                        (format "CanvasL sync could not start: %s"
                                meta-log-federation--sync-start-error)
                        :error)
       (meta-log-federation--sync-update-mode-line)))
    (when (meta-log-federation-sync-running-p)
      (meta-log-federation--sync-start-1 sync-dir))))

(defun meta-log-federation--sync-start-1 (sync-dir)
  "Start syncing once the engine is open; the peers' files go to SYNC-DIR."
  (meta-log-federation--sync-refresh-shared-files)
  (meta-log-federation--sync-watch sync-dir)
  (pcase-dolist (`(,hook . ,function) meta-log-federation--sync-hooks)
    (add-hook hook function))
  ;; Load every share now, so a damaged or missing state is rebuilt, and
  ;; its warning shown, at start rather than at the first event.
  (meta-log-federation--sync-run-actions (cdr (meta-log-federation--sync-status)))
  (meta-log-federation--sync-hold-visited))

(defun meta-log-federation--sync-hold-visited ()
  "Hold every shared file that a buffer visits (see `--sync-first-change')."
  (dolist (buffer (buffer-list))
    (with-current-buffer buffer
      (unless meta-log-federation--holding
        (meta-log-federation--sync-visit)))))

(defun meta-log-federation--sync-on-connect ()
  "Take in offline edits and ask the peers for what we missed."
  (when (meta-log-federation-sync-running-p)
    (meta-log-federation--sync-run-actions (meta-log-federation--sync-startup))))

(defun meta-log-federation--sync-with-peer (_peer-id)
  "Catch up every share (answers come from every peer that has more)."
  (when (meta-log-federation-sync-running-p)
    (meta-log-federation--sync-run-actions (meta-log-federation--sync-catch-up nil))))

(defun meta-log-federation--sync-after-link-down (peer-id _reason)
  "Catch up every share after the direct link to PEER-ID went down.
Sync events in flight on a link that breaks are not resent; a catch-up
on both sides (each sees its link go down) brings back what either
missed, through the broker."
  (meta-log-federation--sync-with-peer peer-id))

(defun meta-log-federation--sync-offer-to (peer-id _name)
  "Tell PEER-ID, just online, about the shares this Emacs started."
  (when (meta-log-federation-sync-running-p)
    (meta-log-federation--sync-run-actions (meta-log-federation--sync-offer peer-id))))

(defun meta-log-federation--sync-stop ()
  "Close the sync engine (its state is on disk)."
  (when (timerp meta-log-federation--sync-timer)
    (cancel-timer meta-log-federation--sync-timer)
    (meta-log-federation--sync-take-pending))
  (dolist (w meta-log-federation--sync-watches)
    (ignore-errors (file-notify-rm-watch (cdr w))))
  (setq meta-log-federation--sync-watches nil)
  (meta-log-federation--sync-status-reset)
  (clrhash meta-log-federation--shared-files)
  (pcase-dolist (`(,hook . ,function) meta-log-federation--sync-hooks)
    (remove-hook hook function))
  (when (fboundp 'meta-log-federation--sync-close)
    ;; The worker finishes the saves handed to it before it closes.
    (meta-log-federation--sync-close))
  (meta-log-federation--save-abandon-pending))

(add-hook 'meta-log-federation-started-hook #'meta-log-federation--sync-start)
(add-hook 'meta-log-federation-stopping-hook #'meta-log-federation--sync-stop)

;;;; Commands

(defun meta-log-federation--read-shared (prompt)
  "Read a shared file's URL with completion, showing PROMPT."
  (meta-log-federation--sync-require)
  (let ((urls (mapcar (lambda (s) (plist-get s :url))
                      (cl-remove-if-not (lambda (s) (plist-get s :active))
                                        (meta-log-federation--sync-share-list)))))
    (unless urls (user-error "No file is shared"))
    (completing-read prompt urls nil t)))

(defun meta-log-federation-share-canvasl (file &rest args)
  "Share the CanvasL FILE with the federation; return its canvasl:// URL.
ARGS are an optional NAME, then keyword arguments:
  :name NAME       the name peers see (default: FILE's name; it must end
                   with .canvasl or .jsonl, or .org, .md or .txt for a
                   text file, whose lines merge whole);
  :members PEERS   a list of peer ids: only they (and this peer, the
                   share's origin) receive and edit the share; `all', or
                   leaving it out, shares with the whole federation;
  :background t    return the URL at once: the file is read and its
                   merge state built on the sync worker, and a message
                   says when the share is ready (a warning if it could
                   not be made).  Interactively, always.
Peers receive the whole file, then only changes.  See
`meta-log-federation-share-add-member' to change the members later."
  (interactive (list (read-file-name "Share file: " nil nil t nil
                                     (lambda (f) (or (file-directory-p f)
                                                     (string-match-p "\\.\\(canvasl\\|jsonl\\|org\\|md\\|txt\\)\\'" f))))))
  (meta-log-federation--sync-require)
  (let* ((file (expand-file-name file))
         (buffer (find-buffer-visiting file))
         (name (if (keywordp (car args)) (plist-get args :name) (car args)))
         (keys (if (keywordp (car args)) args (cdr args))))
    (when (and buffer (buffer-modified-p buffer))
      (user-error "Save %s first: its unsaved edits would not be shared" (buffer-name buffer)))
    (if (and (or (plist-get keys :background) (called-interactively-p 'interactive))
             (not (plist-member keys :members))
             (fboundp 'meta-log-federation--sync-share-background))
        ;; Bad names and missing files are refused now; the rest runs on the worker.
        (meta-log-federation--sync-share-background file name)
      (meta-log-federation--share-canvasl-now file name keys))))

(defun meta-log-federation--share-canvasl-now (file name keys)
  "Share FILE as NAME on this thread; KEYS as `meta-log-federation-share-canvasl'.
Return the share's URL once peers can ask for it."
  (let* ((r (if (plist-member keys :members)
                (meta-log-federation--sync-share-members
                 file name (plist-get keys :members))
              (meta-log-federation--sync-share file name)))
         (url (car r)))
    (meta-log-federation--sync-run-actions (cdr r))
    (meta-log-federation--sync-refresh-shared-files)
    (meta-log-federation--sync-hold-visited)
    url))

(defun meta-log-federation--sync-on-shared (event)
  "Note the share the worker made, from EVENT (see `--sync-share-background').
EVENT is [shared ASKED URL FILE] or [share-failed ASKED FILE WHY]."
  (pcase (aref event 0)
    ('shared
     (let ((url (aref event 2)) (file (aref event 3)))
       (when (meta-log-federation-sync-running-p)
         (puthash (file-truename file) url meta-log-federation--shared-files)
         (meta-log-federation--sync-watch (file-name-directory file))
         (let ((buffer (find-buffer-visiting file)))
           (when buffer
             (with-current-buffer buffer (meta-log-federation--sync-visit)))))
       (message "meta-log-federation: sharing %s as %s" (abbreviate-file-name file) url)))
    ('share-failed
     (display-warning 'meta-log-federation
                      (format "Could not share %s: %s" (abbreviate-file-name (aref event 2))
                              (aref event 3))
                      :warning))))

(dolist (type '(shared share-failed))
  (meta-log-federation--on-event type #'meta-log-federation--sync-on-shared))

(defun meta-log-federation-unshare-canvasl (file-or-url)
  "Stop syncing FILE-OR-URL (a synced file or its canvasl:// URL).
The file and its merge state stay; sharing it again resumes."
  (interactive (list (meta-log-federation--read-shared "Stop sharing: ")))
  (meta-log-federation--sync-require)
  (meta-log-federation--sync-run-actions
   (meta-log-federation--sync-unshare (meta-log-federation--share-arg file-or-url)))
  (meta-log-federation--sync-refresh-shared-files)
  (when (called-interactively-p 'interactive)
    (message "meta-log-federation: %s is no longer synced" file-or-url))
  t)

(defun meta-log-federation-shared-canvasl-files (&optional details)
  "Return the synced files' names; with DETAILS, plists about each share.
A plist has :url :path :local (we shared it) :active :lines :bytes
:state-bytes and :conflicts.  With DETAILS `brief', the plists have
only :url :path :local and :active, which cost no look at the files
\(the sizes of a large file are counted when it changes, and a share
not loaded yet is loaded to count them).  Interactively, list them."
  (interactive)
  (meta-log-federation--sync-require)
  (let* ((interactive (called-interactively-p 'interactive))
         (shares (cl-remove-if-not
                  (lambda (s) (plist-get s :active))
                  ;; Only the sizes cost a look at the files.
                  (if (or interactive (not (memq details '(nil brief))))
                      (meta-log-federation--sync-shares)
                    (meta-log-federation--sync-share-list)))))
    (when interactive
      (message "meta-log-federation: %s"
               (if shares
                   (mapconcat (lambda (s) (format "%s (%d lines)" (plist-get s :url)
                                                  (plist-get s :lines)))
                              shares ", ")
                 "no shared files")))
    (if details shares (mapcar (lambda (s) (plist-get s :path)) shares))))

(defun meta-log-federation-canvasl-conflicts (file)
  "Return the concurrent writes recorded in the shared FILE.
Each is a plist: :line (0-based), :id (the entry's id, if any),
:field (nil for a whole line), :winner (the value every peer shows) and
:losers (the values that lost), values as JSON text.  Interactively,
show them."
  (interactive (list (or (and buffer-file-name
                              (gethash (file-truename buffer-file-name)
                                       meta-log-federation--shared-files)
                              buffer-file-name)
                         (meta-log-federation--read-shared "Conflicts of: "))))
  (meta-log-federation--sync-require)
  (let ((conflicts (meta-log-federation--sync-conflicts (meta-log-federation--share-arg file))))
    (when (called-interactively-p 'interactive)
      (if (null conflicts)
          (message "meta-log-federation: no conflicts in %s" file)
        (with-help-window "*meta-log-federation conflicts*"
          (dolist (c conflicts)
            (princ (format "line %d%s%s: shows %s, lost %s\n"
                           (1+ (plist-get c :line))
                           (if (plist-get c :id) (format " (id %s)" (plist-get c :id)) "")
                           (if (plist-get c :field) (format " field %s" (plist-get c :field)) "")
                           (plist-get c :winner)
                           (mapconcat #'identity (plist-get c :losers) ", ")))))))
    conflicts))

(defun meta-log-federation--online-peer-labels ()
  "Return the labels of the peers online now."
  (mapcar (lambda (p) (meta-log-federation--peer-label (plist-get p :peer-id)))
          (cl-remove-if-not (lambda (p) (eq (plist-get p :status) 'online))
                            (meta-log-federation-peers))))

(defun meta-log-federation--catch-up-report (what sent online)
  "Return what a catch-up of WHAT did: SENT requests, to the ONLINE peer labels."
  (format "meta-log-federation: asked %s for what this Emacs misses of %s (%d sync request%s sent on the sync topic)%s"
          (if online
              (format "the %d peer%s online (%s)" (length online)
                      (if (cdr online) "s" "") (string-join online ", "))
              "every peer (none is online now)")
          what sent (if (= sent 1) "" "s")
          (cond ((zerop sent) "; nothing to ask: no share is active")
                ((null online) "; peers are asked again when they come online")
                (t ""))))

(defun meta-log-federation-canvasl-catch-up (&optional file-or-url)
  "Ask the peers for what we miss of FILE-OR-URL (default: every share).
The requests go out on the sync topic, so every peer online may
answer.  Interactively, with a prefix argument, read the share to catch
up; say what was asked of whom.  Return the number of requests sent."
  (interactive (list (and current-prefix-arg
                          (meta-log-federation--read-shared "Catch up share: "))))
  (meta-log-federation--sync-require)
  (let* ((before (plist-get (meta-log-federation-counters) :sent))
         (_ (meta-log-federation--sync-run-actions
             (meta-log-federation--sync-catch-up
              (and file-or-url (meta-log-federation--share-arg file-or-url)))))
         (sent (- (plist-get (meta-log-federation-counters) :sent) before)))
    (when (called-interactively-p 'interactive)
      (message "%s" (meta-log-federation--catch-up-report
                     (or file-or-url
                         (format "every shared file (%d)"
                                 (length (meta-log-federation-shared-canvasl-files))))
                     sent (meta-log-federation--online-peer-labels))))
    sent))

(defconst meta-log-federation--sync-refusals-buffer "*meta-log-federation sync refusals*"
  "Name of the buffer listing refused sync messages.")

(defun meta-log-federation-sync-refusals ()
  "Return the counts of refused sync messages, an alist (REASON . COUNT).
Interactively, show them in a buffer, the reasons that occurred first."
  (interactive)
  (meta-log-federation--sync-require)
  (let ((refusals (meta-log-federation--sync-refusals)))
    (when (called-interactively-p 'interactive)
      (with-help-window meta-log-federation--sync-refusals-buffer
        (let ((seen (cl-remove-if #'zerop refusals :key #'cdr)))
          (princ (if seen
                     (format "%d sync message%s refused since federation started:\n\n"
                             (apply #'+ (mapcar #'cdr seen)) (if (cdr seen) "s" ""))
                   "No sync message was refused since federation started.\n\n"))
          (dolist (r (append seen (cl-remove-if-not #'zerop refusals :key #'cdr)))
            (princ (format "%8d  %s\n" (cdr r) (car r))))
          (princ "\nEach refusal is also logged in *Messages* and passed to\n`meta-log-federation-sync-refused-functions'.\n"))))
    refusals))

(provide 'meta-log-federation-sync)
;;; meta-log-federation-sync.el ends here
