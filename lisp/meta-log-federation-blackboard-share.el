;;; meta-log-federation-blackboard-share.el --- Sharing the Org blackboard  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; The Org blackboard's content is shared with the federation as a
;; text share (every line merges as a whole, see src/merge/text.rs):
;; headings and text a person writes on one peer appear on the others,
;; concurrent edits of different lines all survive, and two writes of
;; one line end with the same winner everywhere, the loser listed by
;; `meta-log-federation-canvasl-conflicts'.
;;
;; Each peer's blackboard is its own share, named
;; canvasl://PEER-ID/blackboard.org whatever the local file is called
;; (the rule is the module's, `meta-log-federation--blackboard-share-url'),
;; so any peer can name another's.  Other peers keep it under
;; `meta-log-federation-sync-directory' as PEER-ID/blackboard.org and may
;; edit it there; `meta-log-federation-open-blackboard' visits it.
;;
;; The peer records under "Peers" stay local: sharing moves them to a
;; side file, NAME-peers.org beside the blackboard, where they are kept
;; from then on (`meta-log-federation--blackboard-records-file').  So the
;; shared text is only what people write, no peer's last-seen time
;; travels, and no record update is ever published, echoed or in
;; conflict.

;;; Code:

(require 'cl-lib)
(require 'meta-log-federation-custom)
(require 'meta-log-federation-blackboard)
(require 'meta-log-federation-sync)

(declare-function meta-log-federation--blackboard-share-url "meta-log-federation-module")
(declare-function meta-log-federation--sync-ask "meta-log-federation-module")
(declare-function meta-log-federation--sync-catch-up "meta-log-federation-module")
(declare-function meta-log-federation--sync-file-changed "meta-log-federation-module")
(declare-function meta-log-federation--federation-peer-id "meta-log-federation-module")
(declare-function meta-log-federation--write-file-atomic "meta-log-federation-module")

(defcustom meta-log-federation-blackboard-shared nil
  "If non-nil, share the Org blackboard with the federation when federation starts.
Its content then reaches every peer (in clear on the broker, like any
shared canvas), and the peer records move to a local side file.  The
default is nil: what a person writes on the blackboard leaves the
machine only when they ask for it, with this option or
\\[meta-log-federation-share-blackboard].  A blackboard shared once stays
shared until `meta-log-federation-unshare-canvasl' on its file."
  :type 'boolean
  :group 'meta-log-federation)

(defun meta-log-federation--blackboard-share-name ()
  "Return the share name every peer's blackboard has, from the module's rule."
  (file-name-nondirectory
   (meta-log-federation--blackboard-share-url (meta-log-federation--federation-peer-id))))

(defun meta-log-federation-blackboard-shared-p (&optional file)
  "Return the share URL of the blackboard FILE if sync shares it now, else nil.
FILE defaults to the running federation's blackboard."
  (let ((file (or file meta-log-federation--blackboard)))
    (and file
         (meta-log-federation-sync-running-p)
         (gethash (file-truename file) meta-log-federation--shared-files))))

;;;; Moving the peer records out

(defun meta-log-federation--blackboard-remove-records ()
  "Delete the peer records under \"Peers\" in the current buffer; return how many.
A record is what `meta-log-federation--index-peer-entries' finds: a
third-level heading and the property drawer with a PEER_ID right below
it.  Notes a person wrote below a record stay where they are."
  (save-excursion
    (save-restriction
      (widen)
      (goto-char (point-min))
      (let ((case-fold-search nil))
        (if (not (and (re-search-forward "^\\* Federation Blackboard" nil t)
                      (re-search-forward "^\\*\\* Peers[ \t]*$"
                                         (meta-log-federation--heading-end 1) t)))
            0
          (goto-char (line-beginning-position))
          (let ((places nil))
            (maphash (lambda (_id place) (push place places))
                     (meta-log-federation--index-peer-entries
                      (meta-log-federation--heading-end 2)))
            ;; From the end backwards, so the positions still to use stay valid.
            (dolist (place (sort places (lambda (a b) (> (car a) (car b)))))
              (delete-region (car place) (cdr place)))
            (length places)))))))

(defun meta-log-federation--blackboard-move-records (file)
  "Make the peer records of the blackboard FILE local before it is shared.
The side file is created (records go there from now on) and the records
are deleted from FILE, through the buffer visiting it if there is one.
A buffer with unsaved edits is refused: save it first."
  (let ((buffer (find-buffer-visiting file)))
    (when (and buffer (buffer-modified-p buffer))
      (user-error "Save %s first: its unsaved edits would not be shared" (buffer-name buffer)))
    (meta-log-federation-create-blackboard (meta-log-federation--blackboard-side-file file))
    (if buffer
        (with-current-buffer buffer
          (when (> (meta-log-federation--blackboard-remove-records) 0)
            (let ((save-silently t)
                  (inhibit-message t))
              (save-buffer))))
      (let* ((removed 0)
             (text (with-temp-buffer
                     (insert-file-contents file)
                     (setq removed (meta-log-federation--blackboard-remove-records))
                     (buffer-string))))
        (when (> removed 0)
          (meta-log-federation--write-file-atomic file text t))))
    ;; Every peer is written to the side file at the next update.
    (clrhash meta-log-federation--blackboard-written)))

;;;; Commands

(defun meta-log-federation-share-blackboard ()
  "Share the Org blackboard with the federation; return its canvasl:// URL.
Every peer receives it as canvasl://YOUR-PEER-ID/blackboard.org and
may edit it; concurrent edits of different lines all survive.  The
peer records under \"Peers\" move to a local side file first (see
`meta-log-federation--blackboard-records-file').  Sharing a blackboard
already shared only returns its URL."
  (interactive)
  (meta-log-federation--sync-require)
  (unless meta-log-federation--blackboard
    (user-error "Federation has no blackboard: call `meta-log-federation-init' first"))
  (let ((file meta-log-federation--blackboard)
        (interactive (called-interactively-p 'interactive)))
    (or (meta-log-federation-blackboard-shared-p file)
        (progn
          (meta-log-federation--blackboard-move-records file)
          (let ((url (meta-log-federation-share-canvasl
                      file (meta-log-federation--blackboard-share-name))))
            (meta-log-federation--record-peers (meta-log-federation--announced-peers-now) nil)
            (when interactive
              (message "meta-log-federation: sharing the blackboard %s as %s (peer records kept in %s)"
                       (abbreviate-file-name file) url
                       (abbreviate-file-name (meta-log-federation--blackboard-side-file file))))
            url)))))

(defun meta-log-federation--held-shares ()
  "Return a table: URL of each active share here -> its file."
  (let ((table (make-hash-table :test #'equal)))
    (dolist (s (meta-log-federation-shared-canvasl-files 'brief))
      (when (plist-get s :active)
        (puthash (plist-get s :url) (plist-get s :path) table)))
    table))

(defun meta-log-federation-blackboard-file-of (peer-id &optional held)
  "Return the local file of PEER-ID's shared blackboard, or nil if it is not here.
For this Emacs' own peer id, the blackboard itself.  HELD, if given, is
the table of `meta-log-federation--held-shares' (to ask the engine once
for many peers)."
  (meta-log-federation--check-peer-id peer-id)
  (if (equal peer-id (meta-log-federation--federation-peer-id))
      meta-log-federation--blackboard
    (gethash (meta-log-federation--blackboard-share-url peer-id)
             (or held (meta-log-federation--held-shares)))))

(defun meta-log-federation-open-blackboard (&optional peer-id)
  "Visit the blackboard of PEER-ID, or this Emacs' own without one.
Interactively, a prefix argument reads PEER-ID with completion over the
peers whose blackboard is here.  A shared blackboard holds text other
peers wrote, so its file-local variables are ignored (a peer could
otherwise set variables, or ask to evaluate code, in this Emacs)."
  (interactive
   (list (and current-prefix-arg
              (let ((held (meta-log-federation--held-shares)))
                (meta-log-federation--read-peer
                 "Blackboard of peer: "
                 (lambda (p)
                   (meta-log-federation-blackboard-file-of (plist-get p :peer-id) held)))))))
  (meta-log-federation--require-running)
  (let ((file (if peer-id
                  (meta-log-federation-blackboard-file-of peer-id)
                meta-log-federation--blackboard)))
    (unless file
      (user-error "The blackboard of %s is not here yet: ask for it with C-u M-x meta-log-federation-sync-blackboard"
                  (meta-log-federation--peer-label peer-id)))
    (let ((enable-local-variables nil))
      (find-file file))))

;;;; With `meta-log-federation-sync-blackboard' and at start

(defun meta-log-federation--blackboard-sync-now (peer-id)
  "Share and catch up the blackboard, and ask PEER-ID for its own.
Nothing happens unless sync runs.  Called by
`meta-log-federation-sync-blackboard'.  Return a short report of what
was done, or nil."
  (when (meta-log-federation-sync-running-p)
    (let ((done nil)
          (own (meta-log-federation-blackboard-shared-p)))
      (cond (own
             (meta-log-federation--sync-run-actions (meta-log-federation--sync-catch-up own))
             (push "asked the peers for missed edits" done))
            (meta-log-federation-blackboard-shared
             (meta-log-federation-share-blackboard)
             (push "blackboard shared" done)))
      (when (and peer-id (not (equal peer-id (meta-log-federation--federation-peer-id))))
        (meta-log-federation--sync-run-actions
         (meta-log-federation--sync-ask (meta-log-federation--blackboard-share-url peer-id)
                                        peer-id))
        (push (format "asked %s for its blackboard" (meta-log-federation--peer-label peer-id))
              done))
      (and done (mapconcat #'identity (nreverse done) "; ")))))

(defun meta-log-federation--blackboard-at-start ()
  "At the start of federation, bring back a missing blackboard; share it if asked.
A blackboard that is shared but missing (deleted while Emacs was
closed; `meta-log-federation-blackboard-start' left it so) is written
again from its merge state; one that is not shared is created empty.
It is shared if `meta-log-federation-blackboard-shared' is non-nil."
  (let ((file meta-log-federation--blackboard))
    (when (and file (meta-log-federation-sync-running-p))
      (condition-case err
          (progn
            (unless (file-exists-p file)
              (let ((url (meta-log-federation-blackboard-shared-p file)))
                (if url
                    (meta-log-federation--sync-run-actions
                     (meta-log-federation--sync-file-changed url))
                  (meta-log-federation-create-blackboard file))))
            (when (and meta-log-federation-blackboard-shared
                       (not (meta-log-federation-blackboard-shared-p)))
              (meta-log-federation-share-blackboard)))
        (error
         (display-warning 'meta-log-federation
                          (format "The blackboard could not be shared: %s"
                                  (error-message-string err))
                          :warning))))))

;; After sync has started (depth 0).
(add-hook 'meta-log-federation-started-hook #'meta-log-federation--blackboard-at-start 90)

(provide 'meta-log-federation-blackboard-share)
;;; meta-log-federation-blackboard-share.el ends here
