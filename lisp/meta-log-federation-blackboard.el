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
;; save writes both.  Without a buffer, the file is replaced atomically.

;;; Code:

(require 'cl-lib)
(require 'meta-log-federation-custom)

(declare-function meta-log-federation-peers "meta-log-federation-node")
(declare-function meta-log-federation-running-p "meta-log-federation-node")
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
      (with-temp-file file
        (insert "#+TITLE: Federation Blackboard\n\n"
                "* Federation Blackboard\n"
                ":PROPERTIES:\n"
                ":FEDERATION_VERSION: 1.0\n"
                (format ":BLACKBOARD_ID: blackboard-%s\n"
                        (substring (secure-hash 'sha256 (format "%s%s%s" (random) (float-time) (emacs-pid))) 0 12))
                (format ":LAST_SYNC: %s\n" (meta-log-federation--iso-time nil))
                ":END:\n"
                "** Peers\n"
                "** CanvasL State\n")))
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

(defun meta-log-federation--peer-value (peer key)
  "Return the blackboard text of KEY in the PEER plist."
  (let ((v (plist-get peer key)))
    (cond ((eq key :last-seen) (if (and v (> v 0)) (meta-log-federation--iso-time v) ""))
          ((symbolp v) (if v (symbol-name v) ""))
          (t (format "%s" v)))))

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

(defun meta-log-federation--update-blackboard-text (peers)
  "Record PEERS in the current buffer's Org blackboard text."
  (save-excursion
    (save-restriction
      (widen)
      (meta-log-federation--goto-peers-heading)
      (dolist (peer peers)
        (let ((peers-end (meta-log-federation--goto-peers-heading)))
          (meta-log-federation--find-or-insert-heading
           (format "^\\*\\*\\* Peer: %s[ \t]*$" (regexp-quote (plist-get peer :peer-id)))
           (format "*** Peer: %s\n" (plist-get peer :peer-id))
           peers-end)
          (dolist (prop meta-log-federation--blackboard-properties)
            (meta-log-federation--set-property
             (car prop) (meta-log-federation--peer-value peer (cdr prop)))))))))

;;;; Writing to the file or its buffer

(defun meta-log-federation--write-blackboard (file peers)
  "Record PEERS in the blackboard FILE, respecting a buffer visiting it."
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
      (let ((temp (make-temp-name (concat file ".tmp"))))
        (with-temp-buffer
          (insert-file-contents file)
          (meta-log-federation--update-blackboard-text peers)
          (let ((coding-system-for-write 'utf-8-unix))
            (write-region nil nil temp nil 'silent)))
        (rename-file temp file t)))))

(defun meta-log-federation-sync-blackboard (&optional peer-id)
  "Record the known peers in the blackboard now; only PEER-ID if given.
Return the blackboard file's name."
  (interactive)
  (unless meta-log-federation--blackboard
    (user-error "Federation is not running: call `meta-log-federation-init' first"))
  (let ((peers (meta-log-federation-peers)))
    (when peer-id
      (setq peers (cl-remove-if-not (lambda (p) (equal (plist-get p :peer-id) peer-id))
                                    peers)))
    (meta-log-federation-create-blackboard meta-log-federation--blackboard)
    (meta-log-federation--write-blackboard meta-log-federation--blackboard peers)
    (when (called-interactively-p 'interactive)
      (message "meta-log-federation: %d peers recorded in %s" (length peers)
               (abbreviate-file-name meta-log-federation--blackboard)))
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
        (meta-log-federation-sync-blackboard)
      (error (meta-log-federation--log "blackboard: %s" (error-message-string err))))))

(defun meta-log-federation-blackboard-start (file)
  "Keep the blackboard FILE up to date from now on."
  (setq meta-log-federation--blackboard (meta-log-federation-create-blackboard file))
  (add-hook 'meta-log-federation-peers-changed-hook #'meta-log-federation--blackboard-soon))

(defun meta-log-federation-blackboard-stop ()
  "Write the blackboard a last time and stop updating it."
  (when (timerp meta-log-federation--blackboard-timer)
    (cancel-timer meta-log-federation--blackboard-timer))
  (setq meta-log-federation--blackboard-timer nil)
  (when meta-log-federation--blackboard
    (ignore-errors (meta-log-federation-sync-blackboard)))
  (remove-hook 'meta-log-federation-peers-changed-hook #'meta-log-federation--blackboard-soon)
  (setq meta-log-federation--blackboard nil))

(provide 'meta-log-federation-blackboard)
;;; meta-log-federation-blackboard.el ends here
