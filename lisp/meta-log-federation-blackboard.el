;;; meta-log-federation-blackboard.el --- The federation's Org blackboard  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; The blackboard is an Org file that records the federation's peers,
;; as the prototype's did:
;;
;;   * Federation Blackboard
;;   ** Peers
;;   *** Peer: <peer-id>
;;   :PROPERTIES:
;;   :PEER_ID: ...  :PEER_NAME: ...  :PEER_PUBLIC_KEY: ...
;;   :PEER_ADDRESS: ...  :PEER_STATUS: ...  :LAST_SEEN: ...  :PEER_TRUST: ...
;;   :END:
;;   ** CanvasL State
;;
;; It is updated in place: only the property values that changed are
;; rewritten, each peer under its own heading inside "Peers", the rest
;; of the file untouched.  When a buffer visits the file, the update is
;; made in that buffer (point and window stay where they are) and saved
;; only if the buffer had no unsaved edits; otherwise the user's next
;; save writes both.  Without a buffer, the file is replaced atomically
;; (exclusive 0600 temporary file, fsync, rename).
;;
;; Peer entries are found by their PEER_ID property, never by heading
;; text, and only peers whose entry changed are rewritten.  Everything a
;; peer sent is escaped (`meta-log-federation--org-value') so that no
;; name can add a heading, drawer, block or link.
;;
;; Once the blackboard is shared with the federation
;; (meta-log-federation-blackboard-share.el), the peer records stay
;; local: they go to a side file, NAME-peers.org beside it, so that no
;; peer's last-seen times travel, fight or loop.

;;; Code:

(require 'cl-lib)
(require 'meta-log-federation-custom)
(require 'meta-log-federation-events)

(declare-function meta-log-federation--require-running "meta-log-federation-node")
(declare-function meta-log-federation--federation-announced-peers "meta-log-federation-module")
(declare-function meta-log-federation-running-p "meta-log-federation-node")
(declare-function meta-log-federation--peer-id-p "meta-log-federation-node")
(declare-function meta-log-federation--check-peer-id "meta-log-federation-node")
(declare-function meta-log-federation--read-peer "meta-log-federation-node")
(declare-function meta-log-federation-blackboard-shared-p "meta-log-federation-blackboard-share")
(declare-function meta-log-federation--blackboard-sync-now "meta-log-federation-blackboard-share")
(declare-function meta-log-federation--log "meta-log-federation-custom")
(declare-function meta-log-federation--write-file-atomic "meta-log-federation-module")
(declare-function meta-log-federation--write-file-atomic-queued "meta-log-federation-module")
(defvar meta-log-federation-peers-changed-hook)

(defcustom meta-log-federation-blackboard-delay 1.0
  "Seconds to wait after a peer change before updating the blackboard.
Changes arriving meanwhile are written together."
  :type 'number
  :group 'meta-log-federation)

(defvar meta-log-federation--blackboard nil
  "Absolute name of the blackboard file while federation runs.")

(defvar meta-log-federation--blackboard-timer nil
  "Pending blackboard update, or nil.")

(defconst meta-log-federation--blackboard-properties
  '(("PEER_ID" . :peer-id) ("PEER_NAME" . :name) ("PEER_PUBLIC_KEY" . :peer-id)
    ("PEER_ADDRESS" . :address) ("PEER_STATUS" . :status)
    ("LAST_SEEN" . :last-seen) ("PEER_TRUST" . :trust))
  "Blackboard property name -> key of the peer plist it shows.")

(defun meta-log-federation-create-blackboard (file)
  "Create the Org blackboard FILE unless it exists; return its absolute name."
  (let ((file (expand-file-name file)))
    (unless (file-exists-p file)
      (make-directory (file-name-directory file) t)
      (meta-log-federation--write-file-atomic
       file
       (concat "#+TITLE: Federation Blackboard\n\n"
               "* Federation Blackboard\n"
               ":PROPERTIES:\n"
               ":FEDERATION_VERSION: 1.0\n"
               (format ":BLACKBOARD_ID: blackboard-%s\n"
                       (substring (secure-hash 'sha256 (format "%s%s%s" (random) (float-time) (emacs-pid))) 0 12))
               (format ":LAST_SYNC: %s\n" (meta-log-federation--iso-time nil))
               ":END:\n"
               "** Peers\n"
               "** CanvasL State\n")
       nil))
    file))

(defun meta-log-federation--iso-time (time)
  "Return TIME (Unix seconds, or nil for now) as an ISO 8601 UTC string."
  (format-time-string "%FT%TZ" (or time (current-time)) t))

;;;; Editing the Org text in place

(defun meta-log-federation--heading-end (level)
  "Return the end of the subtree of the LEVEL heading at point."
  (save-excursion
    (forward-line 1)
    (if (re-search-forward (format "^\\*\\{1,%d\\} " level) nil t)
        (line-beginning-position)
      (point-max))))

(defun meta-log-federation--find-or-insert-heading (regexp text bound)
  "Move to the heading matching REGEXP between point and BOUND.
If there is none, insert TEXT (a whole heading line) at BOUND first."
  (if (re-search-forward regexp bound t)
      (goto-char (line-beginning-position))
    (goto-char bound)
    (unless (bolp) (insert "\n"))
    (insert text)
    (forward-line -1)))

(defun meta-log-federation--set-property (name value)
  "Set property NAME to VALUE in the drawer of the heading at point.
Create the drawer or the line if missing; change nothing if equal."
  (save-excursion
    (let* ((heading-end (line-end-position))
           (body-end (save-excursion
                       (forward-line 1)
                       (if (re-search-forward "^\\*+ " nil t)
                           (line-beginning-position)
                         (point-max)))))
      (goto-char heading-end)
      (if (re-search-forward "^:PROPERTIES:[ \t]*$" body-end t)
          (forward-line 1)
        (goto-char heading-end)
        (insert "\n:PROPERTIES:\n:END:")
        (forward-line 0))
      (let ((drawer-end (save-excursion
                          (if (re-search-forward "^:END:[ \t]*$" nil t)
                              (line-beginning-position)
                            (point)))))
        (if (re-search-forward (format "^:%s:[ \t]*\\(.*\\)$" (regexp-quote name))
                               drawer-end t)
            (unless (equal (match-string 1) value)
              (replace-match value t t nil 1))
          (goto-char drawer-end)
          (insert (format ":%s: %s\n" name value)))))))

;;;; Peer entries

(defvar meta-log-federation--blackboard-written (make-hash-table :test 'equal)
  "Peer id -> (PLIST . ENTRY-TEXT) last written for it in the blackboard.
Only peers whose entry text changed are rewritten.")

(defun meta-log-federation--org-value (text)
  "Return TEXT, possibly sent by a peer, safe as one Org property value.
Characters that could end the line, hide text or start Org markup
\(links, macros, inline source blocks) are escaped: control and format
characters as \\uXXXX, and % [ ] { } < > as %XX."
  (if (not (string-match-p "[^[:ascii:]]\\|[[:cntrl:]]\\|[][%{}<>]" text))
      text                              ; the usual case, quickly
    (meta-log-federation--org-escape text)))

(defun meta-log-federation--org-escape (text)
  "Return TEXT with every character `meta-log-federation--org-value' fears escaped."
  (mapconcat
   (lambda (c)
     (cond ((memq (get-char-code-property c 'general-category)
                  '(Cc Cf Zl Zp Cs Co Cn))
            (format "\\u%04X" c))
           ((memq c '(?% ?\[ ?\] ?{ ?} ?< ?>)) (format "%%%02X" c))
           (t (char-to-string c))))
   text ""))

(defun meta-log-federation--peer-value (peer key)
  "Return the blackboard text of KEY in the PEER plist, escaped."
  (let ((v (plist-get peer key)))
    (meta-log-federation--org-value
     (cond ((eq key :last-seen) (if (and v (> v 0)) (meta-log-federation--iso-time v) ""))
           ((symbolp v) (if v (symbol-name v) ""))
           (t (format "%s" v))))))

(defun meta-log-federation--peer-entry-text (peer)
  "Return the heading and property drawer of PEER, as Org text."
  (let ((id (plist-get peer :peer-id)))
    (unless (meta-log-federation--peer-id-p id)
      (error "Not a peer id: %S" id))
    (concat (format "*** Peer: %s\n:PROPERTIES:\n" id)
            (mapconcat (lambda (prop)
                         (format ":%s: %s\n" (car prop)
                                 (meta-log-federation--peer-value peer (cdr prop))))
                       meta-log-federation--blackboard-properties "")
            ":END:\n")))

(defun meta-log-federation--goto-peers-heading ()
  "Move to the \"Peers\" heading, creating the headings it needs.
Return the end of the Peers subtree."
  (goto-char (point-min))
  (meta-log-federation--find-or-insert-heading
   "^\\* Federation Blackboard" "* Federation Blackboard\n" (point-max))
  (meta-log-federation--set-property "LAST_SYNC" (meta-log-federation--iso-time nil))
  (let ((top-end (meta-log-federation--heading-end 1)))
    (meta-log-federation--find-or-insert-heading "^\\*\\* Peers[ \t]*$" "** Peers\n" top-end))
  (meta-log-federation--heading-end 2))

(defun meta-log-federation--index-peer-entries (end)
  "Return a hash table PEER_ID -> (START . DRAWER-END) of entries up to END.
Point is on the Peers heading.  An entry is a third-level heading whose
property drawer, right below it, has a PEER_ID; the first entry of each
peer wins.  DRAWER-END is the end of its :END: line.  One pass: linear
in the size of the Peers subtree."
  (let ((index (make-hash-table :test 'equal))
        (case-fold-search nil))
    (save-excursion
      (forward-line 1)
      (while (re-search-forward "^\\*\\*\\* " end t)
        (let ((start (line-beginning-position)))
          (forward-line 1)
          (when (looking-at "[ \t]*:PROPERTIES:[ \t]*$")
            (let ((drawer-start (point))
                  (drawer-end (save-excursion
                                (and (re-search-forward "^[ \t]*:END:[ \t]*$" end t)
                                     (min (1+ (point)) (point-max))))))
              (when drawer-end
                (goto-char drawer-start)
                (when (and (re-search-forward
                            "^[ \t]*:PEER_ID:[ \t]*\\([0-9a-f]\\{64\\}\\)[ \t]*$"
                            drawer-end t)
                           (not (gethash (match-string 1) index)))
                  (puthash (match-string 1) (cons start drawer-end) index))
                (goto-char drawer-end)))))))
    index))

(defun meta-log-federation--update-blackboard-text (peers)
  "Record PEERS in the current buffer's Org blackboard text.
Each peer's entry is found by its PEER_ID property, never by heading
text, and only its heading and property drawer are rewritten (notes
below them stay); a peer without an entry gets one at the end of
\"Peers\".  Linear in the size of the text and the number of PEERS."
  (save-excursion
    (save-restriction
      (widen)
      (let* ((peers-end (copy-marker (meta-log-federation--goto-peers-heading) t))
             (index (meta-log-federation--index-peer-entries peers-end))
             (updates nil)
             (new nil))
        (dolist (peer peers)
          (let ((place (gethash (plist-get peer :peer-id) index))
                (text (meta-log-federation--peer-entry-text peer)))
            (if place
                (push (list (car place) (cdr place) text) updates)
              (push text new))))
        ;; From the end backwards, so the positions still to use stay valid.
        (dolist (u (sort updates (lambda (a b) (> (car a) (car b)))))
          (pcase-let ((`(,start ,end ,text) u))
            (unless (equal (buffer-substring-no-properties start end) text)
              (goto-char start)
              (delete-region start end)
              (insert text))))
        (when new
          (goto-char peers-end)
          (unless (bolp) (insert "\n"))
          (insert (apply #'concat (nreverse new))))
        (set-marker peers-end nil)))))

;;;; Writing to the file or its buffer

(defvar meta-log-federation--blackboard-queued (make-hash-table :test #'equal)
  "Blackboard files whose write federation's worker has not confirmed yet.
FILE -> (TAG . TEXT), the last write asked for.  The next update starts
from TEXT instead of the file, which may still hold the older text.")

(defvar meta-log-federation--blackboard-tag 0
  "Number of the last write of the blackboard handed to the worker.")

(defvar meta-log-federation--blackboard-write-failed nil
  "Non-nil after a write of the blackboard failed, until one succeeds.
The failure is shown once, not at every update.")

(defvar meta-log-federation--blackboard-write-queued nil
  "Non-nil while blackboard updates are handed to federation's worker.
Bound by the timer's update (`meta-log-federation--blackboard-now'), so
that Emacs does not wait for the disk; an update asked for by a command
or a caller (`meta-log-federation-sync-blackboard') is on disk when it
returns.")

(defun meta-log-federation--write-blackboard (file peers)
  "Record PEERS in the blackboard FILE, respecting a buffer visiting it.
Without a buffer, the file is replaced atomically through an exclusive
0600 temporary file, synced to disk and renamed, by federation's worker
when it runs.  While `meta-log-federation--blackboard-write-queued' is
non-nil, Emacs does not wait for that (the sync can take tens of
milliseconds while the disk is busy), and a failure is shown when the
worker reports it (see `meta-log-federation--blackboard-written-event')."
  (let ((buffer (find-buffer-visiting file)))
    (if buffer
        (with-current-buffer buffer
          (let ((was-modified (buffer-modified-p)))
            (when (and (not was-modified)
                       (not (verify-visited-file-modtime buffer)))
              (revert-buffer t t t))
            (meta-log-federation--update-blackboard-text peers)
            (unless was-modified
              (let ((save-silently t)
                    (inhibit-message t))
                (save-buffer)))))
      (let* ((queued (gethash file meta-log-federation--blackboard-queued))
             (text (with-temp-buffer
                     (if queued
                         (insert (cdr queued))
                       (insert-file-contents file))
                     (meta-log-federation--update-blackboard-text peers)
                     (buffer-string)))
             (tag (setq meta-log-federation--blackboard-tag
                        (1+ meta-log-federation--blackboard-tag))))
        (if (and meta-log-federation--blackboard-write-queued
                 (meta-log-federation--write-file-atomic-queued file text tag))
            (puthash file (cons tag text) meta-log-federation--blackboard-queued)
          ;; Written now (after any queued write of the worker), or an error.
          (remhash file meta-log-federation--blackboard-queued)
          (meta-log-federation--write-file-atomic file text t))))))

(defun meta-log-federation--blackboard-written-event (event)
  "Take in EVENT [file-written FILE TAG ERROR]: a write of the worker ended.
ERROR is nil when FILE holds the text, else why it does not: then every
peer is recorded again at the next update, which starts from the file."
  (let* ((file (aref event 1))
         (error-text (aref event 3))
         (queued (gethash file meta-log-federation--blackboard-queued)))
    (when (and queued (eql (car queued) (aref event 2)))
      (remhash file meta-log-federation--blackboard-queued))
    (cond
     (error-text
      (clrhash meta-log-federation--blackboard-written)
      (unless meta-log-federation--blackboard-write-failed
        (setq meta-log-federation--blackboard-write-failed t)
        (display-warning 'meta-log-federation
                         (format "The blackboard %s cannot be written: %s.  Peers are recorded again once it can (check the directory's permissions and free space)"
                                 file error-text)
                         :warning)))
     (meta-log-federation--blackboard-write-failed
      (setq meta-log-federation--blackboard-write-failed nil)
      (meta-log-federation--log "the blackboard %s is written again" file)))))

(meta-log-federation--on-event 'file-written #'meta-log-federation--blackboard-written-event)

(defun meta-log-federation--changed-peers (peers)
  "Return the PEERS whose blackboard entry differs from the one last written.
Remember the new entries.  A peer whose plist is unchanged is not even
rendered again."
  (cl-remove-if
   (lambda (peer)
     (let* ((id (plist-get peer :peer-id))
            (known (gethash id meta-log-federation--blackboard-written)))
       (or (equal (car known) peer)
           (let ((text (meta-log-federation--peer-entry-text peer)))
             (puthash id (cons (copy-sequence peer) text)
                      meta-log-federation--blackboard-written)
             (equal (cdr known) text)))))
   peers))

(defun meta-log-federation--announced-peers (peers)
  "Return the PEERS that announced themselves (a presence was accepted).
Keys that only sent other events are kept out of the blackboard, so a
flood of throwaway keys cannot fill it."
  (cl-remove-if (lambda (p) (equal (plist-get p :software) "")) peers))

(defun meta-log-federation--announced-peers-now ()
  "Return the peers that announced themselves, asked of the module.
The module leaves the others out (the same rule as
`meta-log-federation--announced-peers'), so a peer table full of
throwaway keys costs no plist per key each time the blackboard is updated."
  (meta-log-federation--require-running)
  (meta-log-federation--federation-announced-peers))

(defun meta-log-federation--blackboard-records-file (blackboard)
  "Return the file where the peer records of the BLACKBOARD file go.
That is BLACKBOARD itself, unless it is shared (see
`meta-log-federation-share-blackboard') or was shared once (its side
file exists): then the side file (`meta-log-federation--blackboard-side-file'),
so that the records stay local and never travel to other peers."
  (let ((side (meta-log-federation--blackboard-side-file blackboard)))
    (if (or (file-exists-p side)
            (and (fboundp 'meta-log-federation-blackboard-shared-p)
                 (meta-log-federation-blackboard-shared-p blackboard)))
        side
      blackboard)))

(defun meta-log-federation--blackboard-side-file (blackboard)
  "Return the local side file of the BLACKBOARD file: NAME-peers.org beside it."
  (concat (file-name-sans-extension blackboard) "-peers.org"))

(defun meta-log-federation--record-peers (peers only-changed)
  "Record PEERS in the blackboard; with ONLY-CHANGED, only those that changed.
They go to `meta-log-federation--blackboard-records-file'.  A missing
file is created and every peer written to it.  Return the peers written."
  (let ((file (meta-log-federation--blackboard-records-file meta-log-federation--blackboard)))
    (unless (file-exists-p file)
      (clrhash meta-log-federation--blackboard-written)
      (setq only-changed nil))
    (meta-log-federation-create-blackboard file)
    (let ((changed (meta-log-federation--changed-peers peers)))
      (when only-changed (setq peers changed))
      (when peers
        (meta-log-federation--write-blackboard file peers))
      peers)))

(defun meta-log-federation-sync-blackboard (&optional peer-id)
  "Record the known peers and sync the shared blackboard now.
Return the blackboard file's name.

The peers are recorded under \"Peers\" (in the local side file once
the blackboard is shared, see `meta-log-federation--blackboard-records-file');
with PEER-ID, only that peer.  While sync runs, the blackboard is also
shared if `meta-log-federation-blackboard-shared' asks for it, a shared
blackboard asks every peer for the edits it missed, and PEER-ID, when
given, is asked for its own blackboard, canvasl://PEER-ID/blackboard.org:
received into `meta-log-federation-sync-directory' if new, else brought
up to date with that peer (`meta-log-federation-open-blackboard' visits
it).  Interactively, a prefix argument reads PEER-ID with completion."
  (interactive (list (and current-prefix-arg
                          (meta-log-federation--read-peer "Sync the blackboard of peer: "))))
  (unless meta-log-federation--blackboard
    (user-error "Federation is not running: call `meta-log-federation-init' first"))
  (when peer-id
    (meta-log-federation--check-peer-id peer-id))
  (let ((peers (meta-log-federation--announced-peers-now)))
    (when peer-id
      (setq peers (cl-remove-if-not (lambda (p) (equal (plist-get p :peer-id) peer-id))
                                    peers)))
    (meta-log-federation--record-peers peers nil)
    (let ((asked (and (fboundp 'meta-log-federation--blackboard-sync-now)
                      (meta-log-federation--blackboard-sync-now peer-id))))
      (when (called-interactively-p 'interactive)
        (message "meta-log-federation: %d peers recorded in %s%s" (length peers)
                 (abbreviate-file-name
                  (meta-log-federation--blackboard-records-file meta-log-federation--blackboard))
                 (if asked (format "; %s" asked) ""))))
    meta-log-federation--blackboard))

(defun meta-log-federation--blackboard-soon ()
  "Update the blackboard after `meta-log-federation-blackboard-delay'."
  (when (and meta-log-federation--blackboard
             (not (timerp meta-log-federation--blackboard-timer)))
    (setq meta-log-federation--blackboard-timer
          (run-at-time meta-log-federation-blackboard-delay nil
                       #'meta-log-federation--blackboard-now))))

(defun meta-log-federation--blackboard-now ()
  "Update the blackboard (from the timer), reporting rather than signalling."
  (setq meta-log-federation--blackboard-timer nil)
  (when (and meta-log-federation--blackboard (meta-log-federation-running-p))
    (condition-case err
        (let ((meta-log-federation--blackboard-write-queued t))
          (meta-log-federation--record-peers (meta-log-federation--announced-peers-now) t))
      (error (meta-log-federation--log "blackboard: %s" (error-message-string err))))))

(defun meta-log-federation-blackboard-start (file)
  "Keep the blackboard FILE up to date from now on.
A missing FILE is created, unless it was shared (its side file exists):
a shared one is written again from its merge state once sync runs
\(meta-log-federation-blackboard-share.el), where a fresh empty blackboard
would be taken for an edit deleting everything peers wrote."
  (setq meta-log-federation--blackboard
        (let ((file (expand-file-name file)))
          (if (and (not (file-exists-p file))
                   (file-exists-p (meta-log-federation--blackboard-side-file file)))
              file
            (meta-log-federation-create-blackboard file))))
  (clrhash meta-log-federation--blackboard-written)
  (add-hook 'meta-log-federation-peers-changed-hook #'meta-log-federation--blackboard-soon))

(defun meta-log-federation-blackboard-stop ()
  "Write the blackboard a last time and stop updating it."
  (when (timerp meta-log-federation--blackboard-timer)
    (cancel-timer meta-log-federation--blackboard-timer))
  (setq meta-log-federation--blackboard-timer nil)
  (when meta-log-federation--blackboard
    (ignore-errors (meta-log-federation-sync-blackboard)))
  (clrhash meta-log-federation--blackboard-queued)
  (remove-hook 'meta-log-federation-peers-changed-hook #'meta-log-federation--blackboard-soon)
  (setq meta-log-federation--blackboard nil))

(provide 'meta-log-federation-blackboard)
;;; meta-log-federation-blackboard.el ends here
