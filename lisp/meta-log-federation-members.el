;;; meta-log-federation-members.el --- Who may hold and edit a shared file  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; A share has a membership: the whole federation (the default), or an
;; explicit list of peer ids, kept as a small document signed by the
;; share's origin (versioned: a newer list wins everywhere).  Only the
;; origin creates a share and changes its members; the engine refuses a
;; share brought by anyone else (`not-origin') and the changes of a peer
;; outside the list (`not-member').
;;
;;   (meta-log-federation-share-canvasl "~/notes/plan.canvasl" :members (list BOB))
;;   M-x meta-log-federation-share-add-member
;;   M-x meta-log-federation-share-remove-member
;;   M-x meta-log-federation-share-members
;;
;; The rules live in the module (src/sync/members.rs); these commands
;; only ask it.

;;; Code:

(require 'cl-lib)
(require 'meta-log-federation-node)
(require 'meta-log-federation-sync)

(declare-function meta-log-federation--sync-set-members "meta-log-federation-module")
(declare-function meta-log-federation--sync-members "meta-log-federation-module")
(declare-function meta-log-federation--sync-share-list "meta-log-federation-module")


(defun meta-log-federation--read-own-share (prompt)
  "Read the URL of a share this peer started, with completion, showing PROMPT."
  (meta-log-federation--sync-require)
  (let ((urls (mapcar (lambda (s) (plist-get s :url))
                      (cl-remove-if-not (lambda (s) (and (plist-get s :active)
                                                         (plist-get s :local)))
                                        (meta-log-federation--sync-share-list)))))
    (unless urls (user-error "This peer shares no file of its own: share one first"))
    (completing-read prompt urls nil t)))

(defun meta-log-federation-share-members (file-or-url)
  "Return the members of the share FILE-OR-URL: `all' or a list of peer ids.
`all' means the whole federation.  The origin is always a member and is
not listed.  Interactively, show them."
  (interactive (list (meta-log-federation--read-shared "Members of share: ")))
  (meta-log-federation--sync-require)
  (let* ((m (meta-log-federation--sync-members
             (meta-log-federation--share-arg file-or-url)))
         (members (if m (plist-get m :members) 'all)))
    (when (called-interactively-p 'interactive)
      (message "meta-log-federation: %s is shared with %s" file-or-url
               (if (eq members 'all)
                   "the whole federation"
                 (if members
                     (mapconcat #'meta-log-federation--peer-label members ", ")
                   "no one but its origin"))))
    members))

(defun meta-log-federation--set-members (url members)
  "Make MEMBERS (`all' or peer ids) the members of our share URL."
  (meta-log-federation--sync-run-actions
   (meta-log-federation--sync-set-members url members)))

(defun meta-log-federation-share-add-member (file-or-url peer-id)
  "Let PEER-ID hold and edit the share FILE-OR-URL, which this peer started.
The peer is sent the share at once.  A share with the whole federation
becomes a share with this one peer.  Return the new member list."
  (interactive
   (let ((url (meta-log-federation--read-own-share "Add a member to share: ")))
     (list url (meta-log-federation--read-peer "Member to add: "))))
  (meta-log-federation--sync-require)
  (unless (meta-log-federation--peer-id-p peer-id)
    (user-error "%S is not a peer id (64 lowercase hex characters)" peer-id))
  (let* ((share (meta-log-federation--share-arg file-or-url))
         (now (meta-log-federation-share-members share))
         (members (if (eq now 'all) (list peer-id) (cl-adjoin peer-id now :test #'equal))))
    (meta-log-federation--set-members share members)
    (when (called-interactively-p 'interactive)
      (message "meta-log-federation: %s is now a member of %s"
               (meta-log-federation--peer-label peer-id) file-or-url))
    members))

(defun meta-log-federation-share-remove-member (file-or-url peer-id)
  "Stop PEER-ID from holding and editing the share FILE-OR-URL.
Only the share's origin (this peer) can do this.  The removed peer keeps
its copy of the file but receives no later edit.  Return the new member
list."
  (interactive
   (let* ((url (meta-log-federation--read-own-share "Remove a member from share: "))
          (members (meta-log-federation-share-members url)))
     (when (or (eq members 'all) (null members))
       (user-error "%s has no member list to remove from: use `meta-log-federation-share-add-member' to give it one" url))
     (list url (meta-log-federation--read-peer
                "Member to remove: "
                (lambda (k) (member (plist-get k :peer-id) members))))))
  (meta-log-federation--sync-require)
  (let* ((share (meta-log-federation--share-arg file-or-url))
         (now (meta-log-federation-share-members share)))
    (when (eq now 'all)
      (user-error "%s is shared with the whole federation: give it a member list first" file-or-url))
    (unless (member peer-id now)
      (user-error "%s is not a member of %s" (meta-log-federation--peer-label peer-id) file-or-url))
    (let ((members (remove peer-id now)))
      (meta-log-federation--set-members share members)
      (when (called-interactively-p 'interactive)
        (message "meta-log-federation: %s is no longer a member of %s"
                 (meta-log-federation--peer-label peer-id) file-or-url))
      members)))

(provide 'meta-log-federation-members)
;;; meta-log-federation-members.el ends here
