;;; meta-log-federation-chat-history.el --- Peer conversations kept in a file  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; Conversations with peers live for the session.  With
;; `meta-log-federation-chat-history' on, they are also written to
;; `meta-log-federation-chat-history-file' (JSON, mode 0600, replaced
;; atomically: a new file renamed over the old one) shortly after each
;; change, and read back when federation starts.  The file holds the
;; messages in clear: they were end-to-end encrypted on the wire, so it
;; is off by default.

;;; Code:

(require 'cl-lib)
(require 'json)
(require 'seq)
(require 'meta-log-federation-custom)
(require 'meta-log-federation-node)
(require 'meta-log-federation-chat)

(defcustom meta-log-federation-chat-history nil
  "If non-nil, keep peer conversations in `meta-log-federation-chat-history-file'.
The file holds the messages in clear (readable by you only, mode 0600)."
  :type 'boolean
  :group 'meta-log-federation)

(defcustom meta-log-federation-chat-history-file
  (locate-user-emacs-file "meta-log/messages.json")
  "File where peer conversations are kept.
Used only when `meta-log-federation-chat-history' is on."
  :type 'file
  :group 'meta-log-federation)

(defconst meta-log-federation-chat--history-version 1
  "Version of the history file's layout.")

(defvar meta-log-federation-chat--history-loaded nil
  "Non-nil once the history file was read in this session.")

(defvar meta-log-federation-chat--history-timer nil
  "Timer that writes the history file shortly after a change.")

(defun meta-log-federation-chat--entry-to-json (entry)
  "Return ENTRY as an alist for `json-serialize'."
  `((direction . ,(symbol-name (meta-log-federation-chat-entry-direction entry)))
    (time . ,(float (meta-log-federation-chat-entry-time entry)))
    (text . ,(meta-log-federation-chat-entry-text entry))
    (id . ,(or (meta-log-federation-chat-entry-id entry) :null))
    (state . ,(symbol-name (meta-log-federation-chat-entry-state entry)))
    (reason . ,(or (meta-log-federation-chat-entry-reason entry) :null))))

(defun meta-log-federation-chat--entry-from-json (object)
  "Return the entry that the parsed OBJECT (a hash table) describes, or nil."
  (let ((direction (gethash "direction" object))
        (time (gethash "time" object))
        (text (gethash "text" object))
        (id (gethash "id" object))
        (state (gethash "state" object))
        (reason (gethash "reason" object)))
    (when (and (member direction '("in" "out")) (numberp time) (stringp text)
               (member state '("received" "sent" "delivered" "failed")))
      (meta-log-federation-chat-entry-create
       :direction (intern direction) :time time
       :text (meta-log-federation-chat--safe-text text)
       :id (and (stringp id) id) :state (intern state)
       :reason (and (stringp reason) (meta-log-federation-chat--safe-text reason 200))))))

(defun meta-log-federation-chat--history-json ()
  "Return the conversations of this session as the history file's text."
  (json-serialize
   `((version . ,meta-log-federation-chat--history-version)
     (conversations
      . ,(vconcat
          (mapcar (lambda (c)
                    `((peer . ,(meta-log-federation-chat-conversation-peer c))
                      (unread . ,(meta-log-federation-chat-conversation-unread c))
                      (entries . ,(vconcat
                                   (mapcar #'meta-log-federation-chat--entry-to-json
                                           (reverse (meta-log-federation-chat-conversation-entries
                                                     c)))))))
                  (meta-log-federation-chat-conversations)))))))

(defun meta-log-federation-chat-save-history ()
  "Write the conversations to `meta-log-federation-chat-history-file' now.
The file is written 0600 under another name in the same directory and
renamed over the old one, so it is never seen half-written.  Return
the file name."
  (interactive)
  (let* ((file (expand-file-name meta-log-federation-chat-history-file))
         (dir (file-name-directory file))
         (text (meta-log-federation-chat--history-json)))
    (unless (file-directory-p dir)
      (with-file-modes #o700 (make-directory dir t)))
    (let ((temp (with-file-modes #o600
                  (make-temp-file (expand-file-name ".messages-" dir))))
          (coding-system-for-write 'utf-8-unix))
      (condition-case err
          (progn
            (set-file-modes temp #o600)
            (write-region text nil temp nil 'silent)
            (rename-file temp file t))
        (error (ignore-errors (delete-file temp))
               (signal (car err) (cdr err)))))
    (when (called-interactively-p 'interactive)
      (message "meta-log-federation: conversations written to %s" (abbreviate-file-name file)))
    file))

(defun meta-log-federation-chat-load-history ()
  "Read `meta-log-federation-chat-history-file' into this session's conversations.
Conversations already in the session keep their messages; those from
the file come before them.  Return the number of conversations read."
  (let ((file (expand-file-name meta-log-federation-chat-history-file))
        (read 0))
    (when (file-exists-p file)
      (let* ((data (with-temp-buffer
                     (let ((coding-system-for-read 'utf-8-unix))
                       (insert-file-contents file))
                     (json-parse-buffer :null-object nil)))
             (conversations (and (hash-table-p data)
                                 (equal (gethash "version" data)
                                        meta-log-federation-chat--history-version)
                                 (gethash "conversations" data))))
        (unless (vectorp conversations)
          (signal 'meta-log-federation-error
                  (list (format "%s is not a conversation history of version %d: move it away"
                                file meta-log-federation-chat--history-version))))
        (seq-doseq (object conversations)
          (let ((peer (and (hash-table-p object) (gethash "peer" object)))
                (entries (and (hash-table-p object) (gethash "entries" object))))
            (when (and (meta-log-federation--peer-id-p peer) (vectorp entries))
              (let ((c (meta-log-federation-chat--conversation peer t))
                    (old (delq nil (mapcar #'meta-log-federation-chat--entry-from-json
                                           (cl-remove-if-not #'hash-table-p entries)))))
                (setf (meta-log-federation-chat-conversation-entries c)
                      (append (meta-log-federation-chat-conversation-entries c) (reverse old))
                      (meta-log-federation-chat-conversation-count c)
                      (length (meta-log-federation-chat-conversation-entries c)))
                (meta-log-federation-chat--reindex c)
                (let ((unread (gethash "unread" object)))
                  (when (natnump unread)
                    (cl-incf (meta-log-federation-chat-conversation-unread c) unread)))
                (let ((buffer (meta-log-federation-chat-conversation-buffer c)))
                  (when (buffer-live-p buffer)
                    (meta-log-federation-chat--redraw buffer c)))
                (cl-incf read)
                (meta-log-federation-chat--changed peer)))))))
    (setq meta-log-federation-chat--history-loaded t)
    read))

(defun meta-log-federation-chat--history-ready-p ()
  "Read the history file once per session; return non-nil if it may be written.
A file that cannot be read is reported and then never overwritten in
this session, so no conversation kept there is lost."
  (when meta-log-federation-chat-history
    (unless meta-log-federation-chat--history-loaded
      (condition-case err
          (meta-log-federation-chat-load-history)
        (error (setq meta-log-federation-chat--history-loaded 'unreadable)
               (display-warning 'meta-log-federation
                                (format "Conversation history not read, and not written this session: %s"
                                        (error-message-string err))
                                :error))))
    (eq meta-log-federation-chat--history-loaded t)))

(defun meta-log-federation-chat--history-flush ()
  "Write the history file now if it is kept; report a failure."
  (when (timerp meta-log-federation-chat--history-timer)
    (cancel-timer meta-log-federation-chat--history-timer))
  (setq meta-log-federation-chat--history-timer nil)
  (when (meta-log-federation-chat--history-ready-p)
    (condition-case err
        (meta-log-federation-chat-save-history)
      (error (display-warning 'meta-log-federation
                              (format "Conversation history not written to %s: %s"
                                      meta-log-federation-chat-history-file
                                      (error-message-string err))
                              :error)))))

(defun meta-log-federation-chat--history-changed (&rest _)
  "Write the history file soon after a conversation changed (coalesced)."
  (when (and meta-log-federation-chat-history
             (not (timerp meta-log-federation-chat--history-timer)))
    (setq meta-log-federation-chat--history-timer
          (run-at-time 2 nil #'meta-log-federation-chat--history-flush))))

;; Read when federation starts, before any message arrives.
(add-hook 'meta-log-federation-started-hook #'meta-log-federation-chat--history-ready-p)
(add-hook 'meta-log-federation-chat-changed-functions #'meta-log-federation-chat--history-changed)
(add-hook 'meta-log-federation-stopping-hook #'meta-log-federation-chat--history-flush)
(add-hook 'kill-emacs-hook #'meta-log-federation-chat--history-flush)

(provide 'meta-log-federation-chat-history)
;;; meta-log-federation-chat-history.el ends here
