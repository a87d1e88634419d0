;;; meta-log-federation-inbox.el --- The list of peer conversations  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; `meta-log-federation-inbox' lists the conversations of this session
;; with peers: who, how many messages are unread, when the last one was
;; and what it said.  RET opens the conversation; the list follows new
;; messages by itself.

;;; Code:

(require 'tabulated-list)
(require 'meta-log-federation-custom)
(require 'meta-log-federation-chat)

(defconst meta-log-federation--inbox-buffer "*meta-log-federation inbox*"
  "Name of the inbox buffer.")

(defun meta-log-federation--inbox-entry (conversation)
  "Return the `tabulated-list-entries' item of CONVERSATION."
  (let* ((peer (meta-log-federation-chat-conversation-peer conversation))
         (last (car (meta-log-federation-chat-conversation-entries conversation)))
         (unread (meta-log-federation-chat-conversation-unread conversation)))
    (list peer
          (vector (meta-log-federation-chat--label peer)
                  (propertize (number-to-string unread)
                              'face (if (> unread 0) 'bold 'shadow))
                  (if last
                      (format-time-string "%F %T" (meta-log-federation-chat-entry-time last))
                    "")
                  (if last
                      (concat (if (eq (meta-log-federation-chat-entry-direction last) 'out)
                                  "you: " "")
                              (meta-log-federation-chat--safe-text
                               (meta-log-federation-chat-entry-text last) 60))
                    "")))))

(defun meta-log-federation--inbox-entries ()
  "Return the rows of the inbox."
  (mapcar #'meta-log-federation--inbox-entry (meta-log-federation-chat-conversations)))

(defvar meta-log-federation-inbox-mode-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "RET") #'meta-log-federation-inbox-open)
    (define-key map "m" #'meta-log-federation-chat)
    map)
  "Keymap of `meta-log-federation-inbox-mode'.")

(define-derived-mode meta-log-federation-inbox-mode tabulated-list-mode
  "Federation Inbox"
  "Major mode listing the conversations with federation peers.
\\{meta-log-federation-inbox-mode-map}"
  (setq tabulated-list-format
        [("Peer" 34 t) ("Unread" 6 t :right-align t) ("Last" 19 t) ("Last message" 0 nil)])
  (setq tabulated-list-sort-key '("Last" . t))
  (setq tabulated-list-entries #'meta-log-federation--inbox-entries)
  (tabulated-list-init-header))

(defun meta-log-federation-inbox-open ()
  "Open the conversation on this line."
  (interactive)
  (meta-log-federation-chat (or (tabulated-list-get-id)
                                (user-error "No conversation on this line"))))

(defun meta-log-federation--refresh-inbox (&rest _)
  "Refresh the inbox buffer if it exists, keeping point on its conversation."
  (let ((buffer (get-buffer meta-log-federation--inbox-buffer)))
    (if (buffer-live-p buffer)
        (with-current-buffer buffer
          (tabulated-list-print t))
      (remove-hook 'meta-log-federation-chat-changed-functions
                   #'meta-log-federation--refresh-inbox))))

(defun meta-log-federation-inbox ()
  "List the conversations with peers and their unread messages.
RET opens a conversation.  Return the inbox buffer."
  (interactive)
  (let ((buffer (get-buffer-create meta-log-federation--inbox-buffer)))
    (with-current-buffer buffer
      (meta-log-federation-inbox-mode)
      (tabulated-list-print))
    (add-hook 'meta-log-federation-chat-changed-functions #'meta-log-federation--refresh-inbox)
    (pop-to-buffer buffer)
    buffer))

(provide 'meta-log-federation-inbox)
;;; meta-log-federation-inbox.el ends here
