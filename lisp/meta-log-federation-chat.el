;;; meta-log-federation-chat.el --- Peer messages a person can read and answer  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; A peer message that arrives is shown in the echo area ("message from
;; alice (3f9ab2c4d5e6): ...") and appended to a conversation buffer of
;; its own, `*meta-log-federation: alice*', like an ERC query buffer:
;; read-only history with both directions and their times, and an input
;; line at the end where RET sends what was typed.  Sends that fail are
;; recorded there too, and, when delivery receipts arrive, whether each
;; message was delivered.  `meta-log-federation-chat' opens the
;; conversation with a peer; `meta-log-federation-inbox' lists them all.
;;
;; Messages are kept for the session (see `meta-log-federation-chat-history'
;; to keep them in a file).  Code that wants messages uses
;; `meta-log-federation-peer-message-functions', which runs whatever
;; `meta-log-federation-chat-notify' says.
;;
;; Everything a peer sends (its text, its display name) is shown only
;; after `meta-log-federation-chat--safe-text' removed what could hide or
;; reorder text, and never as a format string.

;;; Code:

(require 'cl-lib)
(require 'rx)
(require 'seq)
(require 'subr-x)
(require 'meta-log-federation-custom)
(require 'meta-log-federation-node)
(require 'meta-log-federation-peer-list)

(autoload 'meta-log-federation-inbox "meta-log-federation-inbox"
  "List the conversations with peers and their unread messages." t)

;;;; Options

(defcustom meta-log-federation-chat-notify '(echo-area conversation)
  "How a received peer message is shown to the person.
A list of: `echo-area' (a one-line notice) and `conversation' (the
message is appended to the peer's conversation buffer and counted as
unread in `meta-log-federation-inbox').  The empty list shows nothing;
`meta-log-federation-peer-message-functions' still runs either way."
  :type '(set (const :tag "Notice in the echo area" echo-area)
              (const :tag "Append to the conversation buffer" conversation))
  :group 'meta-log-federation)

(defcustom meta-log-federation-chat-echo-width 80
  "Most characters of a received message shown in the echo-area notice."
  :type 'natnum
  :group 'meta-log-federation)

(defcustom meta-log-federation-chat-max-messages 1000
  "Most messages kept per conversation; older ones are forgotten first."
  :type 'natnum
  :group 'meta-log-federation)

(defcustom meta-log-federation-chat-time-format "%H:%M:%S"
  "Format of the time shown before each message (see `format-time-string')."
  :type 'string
  :group 'meta-log-federation)

(defface meta-log-federation-chat-peer '((t :inherit font-lock-function-name-face))
  "Face of the peer's name in a conversation buffer."
  :group 'meta-log-federation)

(defface meta-log-federation-chat-self '((t :inherit font-lock-keyword-face))
  "Face of \"you\" in a conversation buffer."
  :group 'meta-log-federation)

(defface meta-log-federation-chat-prompt '((t :inherit minibuffer-prompt))
  "Face of the input prompt of a conversation buffer."
  :group 'meta-log-federation)

;;;; Hooks

(defvar meta-log-federation-peer-message-delivered-functions nil
  "Functions called with (ID PEER) when PEER confirmed message ID arrived.")

(defvar meta-log-federation-peer-message-failed-functions nil
  "Functions called with (ID PEER REASON) when message ID to PEER failed.")

(defvar meta-log-federation-chat-changed-functions nil
  "Functions called with (PEER-ID) after a conversation changed.
The inbox and the history file follow conversations this way.")

;;;; Conversation buffers' state

(defvar-local meta-log-federation-chat--shown-label nil
  "How the peer of this buffer is shown (computed once per redisplay).")

;;;; Text from the network

(defconst meta-log-federation-chat--unsafe-regexp
  (rx (any (0 . 8) (11 . 31) 127 (#x80 . #x9f)
           ;; Bidirectional controls and invisible marks reorder or hide text.
           #x61c #x200b #x200e #x200f (#x202a . #x202e) (#x2066 . #x2069) #xfeff
           ;; Raw bytes that are not characters.
           (#x3fff80 . #x3fffff)))
  "Characters removed from peer-supplied text before it is shown.")

(defconst meta-log-federation-chat--rewrite-regexp
  (concat "[\t\r\u2028\u2029]\\|" meta-log-federation-chat--unsafe-regexp)
  "Characters that `meta-log-federation-chat--safe-text' removes or replaces.")

(defun meta-log-federation-chat--safe-text (text &optional width)
  "Return TEXT, a string from a peer, safe to show.
Control characters (but newlines), bidirectional controls and
invisible marks are removed, tabs and line separators become spaces
and newlines, text properties are dropped.  With WIDTH, return one line
of at most WIDTH characters, ending in \"…\" when cut."
  (let ((s (if (stringp text) text (format "%s" text))))
    (when (or (text-properties-at 0 s) (next-property-change 0 s))
      (setq s (substring-no-properties s)))
    ;; Most text needs no change: check once before rewriting it.
    (when (string-match-p meta-log-federation-chat--rewrite-regexp s)
      (setq s (replace-regexp-in-string "[\t]" " " s t t)
            s (replace-regexp-in-string "\r\n?\\|[\u2028\u2029]" "\n" s t t)
            s (replace-regexp-in-string meta-log-federation-chat--unsafe-regexp "" s t t)))
    (if (not width)
        s
      (truncate-string-to-width
       (string-trim (replace-regexp-in-string "[ \n]+" " " s t t))
       width nil nil "…"))))

(defun meta-log-federation-chat--label (peer-id)
  "Return how PEER-ID is shown: its name and short id, made safe."
  (meta-log-federation-chat--safe-text (meta-log-federation--peer-label peer-id) 60))

(defun meta-log-federation-chat--buffer-title (peer-id)
  "Return a safe, short title for PEER-ID's buffer name: its name or short id."
  (let* ((name (and (meta-log-federation-running-p)
                    (plist-get (meta-log-federation-peer peer-id) :name)))
         (safe (and (stringp name)
                    (replace-regexp-in-string
                     "[^[:alnum:]@._+:·-]+" "_"
                     (meta-log-federation-chat--safe-text name 32) t t))))
    (if (or (null safe) (string-empty-p safe)
            (string-match-p "\\`[_.]*\\'" safe))
        (meta-log-federation--short-id peer-id)
      safe)))

;;;; Conversations (kept for the session)

(cl-defstruct (meta-log-federation-chat-entry
               (:constructor meta-log-federation-chat-entry-create)
               ;; Positional, for the receiving path: a third the cost.
               (:constructor meta-log-federation-chat--make-entry
                             (direction time text state &optional id reason))
               (:copier nil))
  "One message of a conversation."
  (direction nil :documentation "`in' (from the peer) or `out' (from us).")
  (time nil :documentation "When it was received or sent, as `float-time'.")
  (text nil :documentation "The message, already made safe to show.")
  (id nil :documentation "The event id, or nil when the send failed.")
  (state nil :documentation "`received', `sent', `delivered' or `failed'.")
  (reason nil :documentation "Why it failed, a string, or nil."))

(cl-defstruct (meta-log-federation-chat-conversation
               (:constructor meta-log-federation-chat-conversation-create)
               (:copier nil))
  "The messages exchanged with one peer."
  (peer nil :documentation "The peer id.")
  (entries nil :documentation "The entries, newest first.")
  (by-id (make-hash-table :test #'equal)
         :documentation "The kept entries that have an event id, by id.
Receipts find their entry here: a search of ENTRIES per receipt made
a burst of N messages cost N times the conversation's length.")
  (count 0 :documentation "Length of ENTRIES.")
  (unread 0 :documentation "Received messages not yet seen.")
  (buffer nil :documentation "The conversation buffer, if made.")
  (pending nil :documentation "Entries not yet shown in the buffer, newest first.")
  (restate nil :documentation "Shown entries whose state changed since the last redisplay.")
  (redraw nil :documentation "Non-nil when the buffer must be drawn again."))

(defvar meta-log-federation-chat--conversations (make-hash-table :test #'equal)
  "Conversations of this session, by peer id.")

(defun meta-log-federation-chat--conversation (peer-id &optional create)
  "Return the conversation with PEER-ID; with CREATE, make it if missing."
  (or (gethash peer-id meta-log-federation-chat--conversations)
      (and create
           (puthash peer-id (meta-log-federation-chat-conversation-create :peer peer-id)
                    meta-log-federation-chat--conversations))))

(defun meta-log-federation-chat-conversations ()
  "Return the conversations of this session, most recent first."
  (let (all)
    (maphash (lambda (_ c) (push c all)) meta-log-federation-chat--conversations)
    (sort all (lambda (a b) (> (meta-log-federation-chat--last-time a)
                               (meta-log-federation-chat--last-time b))))))

(defun meta-log-federation-chat--last-time (conversation)
  "Return the time of CONVERSATION's newest entry, or 0."
  (let ((e (car (meta-log-federation-chat-conversation-entries conversation))))
    (if e (meta-log-federation-chat-entry-time e) 0)))

(defun meta-log-federation-chat-unread (peer-id)
  "Return how many messages from PEER-ID have not been seen."
  (let ((c (meta-log-federation-chat--conversation peer-id)))
    (if c (meta-log-federation-chat-conversation-unread c) 0)))

(defun meta-log-federation-chat--reindex (conversation)
  "Index CONVERSATION's entries by event id again, after ENTRIES was replaced."
  (let ((by-id (meta-log-federation-chat-conversation-by-id conversation)))
    (clrhash by-id)
    (dolist (entry (meta-log-federation-chat-conversation-entries conversation))
      (when (meta-log-federation-chat-entry-id entry)
        (puthash (meta-log-federation-chat-entry-id entry) entry by-id)))))

(defun meta-log-federation-chat--add (peer-id entry)
  "Add ENTRY to the conversation with PEER-ID and return it.
It is shown at the next redisplay (`meta-log-federation-chat--flush')."
  (let ((c (meta-log-federation-chat--conversation peer-id t)))
    (push entry (meta-log-federation-chat-conversation-entries c))
    (push entry (meta-log-federation-chat-conversation-pending c))
    (when (meta-log-federation-chat-entry-id entry)
      (puthash (meta-log-federation-chat-entry-id entry) entry
               (meta-log-federation-chat-conversation-by-id c)))
    (cl-incf (meta-log-federation-chat-conversation-count c))
    ;; Old entries are forgotten at the next redisplay
    ;; (`meta-log-federation-chat--trim'), once for a whole burst.
    (meta-log-federation-chat--changed peer-id)
    entry))

(defun meta-log-federation-chat--trim (conversation)
  "Forget CONVERSATION's oldest entries over the limit.
The limit is `meta-log-federation-chat-max-messages'.
Done at redisplay, in batches (10% over the limit), so that a long
burst costs one trim and one redraw per redisplay, not per message.
Return non-nil if entries were forgotten: the buffer is drawn again."
  (when (> (meta-log-federation-chat-conversation-count conversation)
           (+ meta-log-federation-chat-max-messages
              (max 1 (/ meta-log-federation-chat-max-messages 10))))
    (setf (meta-log-federation-chat-conversation-entries conversation)
          (seq-take (meta-log-federation-chat-conversation-entries conversation)
                    meta-log-federation-chat-max-messages)
          (meta-log-federation-chat-conversation-count conversation)
          meta-log-federation-chat-max-messages
          (meta-log-federation-chat-conversation-pending conversation) nil
          (meta-log-federation-chat-conversation-redraw conversation) t)
    (meta-log-federation-chat--reindex conversation)
    t))

;;;; Redisplay, coalesced

;; A burst of messages costs one redisplay, not one per message: the
;; store takes each message at once, buffers, echo area and followers
;; catch up on a short timer (the way vterm renders a burst of output).

(defconst meta-log-federation-chat--delay 0.1
  "Seconds between a change and its redisplay.")

(defvar meta-log-federation-chat--dirty nil
  "Peer ids whose conversation changed since the last redisplay.")

(defvar meta-log-federation-chat--notice nil
  "The newest received message to announce, as (FROM . TEXT), or nil.")

(defvar meta-log-federation-chat--notice-count 0
  "Received messages to announce since the last redisplay.")

(defvar meta-log-federation-chat--timer nil
  "Timer of the next redisplay.")

(defun meta-log-federation-chat--schedule ()
  "Redisplay soon, unless it is already planned."
  (unless (timerp meta-log-federation-chat--timer)
    (setq meta-log-federation-chat--timer
          (run-at-time meta-log-federation-chat--delay nil
                       #'meta-log-federation-chat--flush))))

(defun meta-log-federation-chat--changed (peer-id)
  "Note that PEER-ID's conversation changed; displays follow shortly."
  (unless (member peer-id meta-log-federation-chat--dirty)
    (push peer-id meta-log-federation-chat--dirty))
  (meta-log-federation-chat--schedule))

(defun meta-log-federation-chat--show-pending (peer-id)
  "Show the new entries of PEER-ID's conversation in its buffer.
The buffer is made when the conversation has new entries."
  (let ((c (meta-log-federation-chat--conversation peer-id)))
    (when c
      (meta-log-federation-chat--trim c)
      (let ((buffer (meta-log-federation-chat-conversation-buffer c))
            (pending (meta-log-federation-chat-conversation-pending c)))
        (cond ((not (buffer-live-p buffer))
               ;; Made from the whole conversation, pending entries included.
               (when (or pending (meta-log-federation-chat-conversation-redraw c))
                 (meta-log-federation-chat--buffer peer-id)))
              ((meta-log-federation-chat-conversation-redraw c)
               (meta-log-federation-chat--redraw buffer c))
              (t
               (meta-log-federation-chat--redraw-states
                buffer (meta-log-federation-chat-conversation-restate c) pending)
               (when pending
                 (with-current-buffer buffer
                   (setq meta-log-federation-chat--shown-label
                         (meta-log-federation-chat--label peer-id)))
                 (meta-log-federation-chat--insert-entries buffer (reverse pending)))))
        (setf (meta-log-federation-chat-conversation-pending c) nil
              (meta-log-federation-chat-conversation-restate c) nil
              (meta-log-federation-chat-conversation-redraw c) nil)))))

(defun meta-log-federation-chat--flush ()
  "Show what changed since the last redisplay: buffers, notice, followers."
  (when (timerp meta-log-federation-chat--timer)
    (cancel-timer meta-log-federation-chat--timer))
  (setq meta-log-federation-chat--timer nil)
  (let ((dirty (reverse meta-log-federation-chat--dirty))
        (notice meta-log-federation-chat--notice)
        (count meta-log-federation-chat--notice-count))
    (setq meta-log-federation-chat--dirty nil
          meta-log-federation-chat--notice nil
          meta-log-federation-chat--notice-count 0)
    (dolist (peer dirty)
      (meta-log-federation--safe-funcall
       #'meta-log-federation-chat--show-pending 'conversation peer))
    (when notice
      (message "%s" (concat "message from " (meta-log-federation-chat--label (car notice)) ": "
                            (meta-log-federation-chat--safe-text
                             (cdr notice) meta-log-federation-chat-echo-width)
                            (if (> count 1)
                                (format "  (and %d more: M-x meta-log-federation-inbox)"
                                        (1- count))
                              ""))))
    (dolist (peer dirty)
      (meta-log-federation--run-hook-safely 'meta-log-federation-chat-changed-functions peer))))

(defun meta-log-federation-chat--find-entry (peer-id id)
  "Return the entry of the message ID sent to PEER-ID, or nil."
  (let ((c (meta-log-federation-chat--conversation peer-id)))
    (and c id (gethash id (meta-log-federation-chat-conversation-by-id c)))))

;;;; Receiving

(defun meta-log-federation-chat--received (from text)
  "Show the message TEXT that the peer FROM sent, as the options say.
Called by federation for each verified, decrypted peer message."
  (when (stringp text)
    (let ((safe (meta-log-federation-chat--safe-text text))
          (shown nil))
      (when (memq 'conversation meta-log-federation-chat-notify)
        (let ((c (meta-log-federation-chat--conversation from t)))
          (meta-log-federation-chat--add
           from (meta-log-federation-chat--make-entry 'in (float-time) safe 'received))
          (setq shown (let ((buffer (meta-log-federation-chat-conversation-buffer c)))
                        (and (buffer-live-p buffer) (get-buffer-window buffer 'visible))))
          (unless shown
            (cl-incf (meta-log-federation-chat-conversation-unread c)))))
      (when (and (memq 'echo-area meta-log-federation-chat-notify) (not shown))
        (setq meta-log-federation-chat--notice (cons from safe))
        (cl-incf meta-log-federation-chat--notice-count)
        (meta-log-federation-chat--schedule)))))

;;;; Delivery

(defun meta-log-federation-chat--set-state (id peer-id state &optional reason)
  "Record that the message ID to PEER-ID is now in STATE, for REASON."
  (let ((entry (meta-log-federation-chat--find-entry peer-id id)))
    (when (and entry
               ;; Delivered is a fact: a later failure report does not undo it.
               (not (eq (meta-log-federation-chat-entry-state entry) 'delivered)))
      (setf (meta-log-federation-chat-entry-state entry) state
            (meta-log-federation-chat-entry-reason entry)
            (and reason (meta-log-federation-chat--safe-text reason 200)))
      ;; Shown at the next redisplay, all states of a burst in one pass
      ;; over the buffer.  An entry not shown yet is shown with its state.
      (push entry (meta-log-federation-chat-conversation-restate
                   (meta-log-federation-chat--conversation peer-id)))
      (meta-log-federation-chat--changed peer-id))))

(defun meta-log-federation-chat--delivered (id peer-id)
  "Mark the message ID to PEER-ID as delivered."
  (meta-log-federation-chat--set-state id peer-id 'delivered))

(defun meta-log-federation-chat--failed (id peer-id reason)
  "Mark the message ID to PEER-ID as failed for REASON."
  (meta-log-federation-chat--set-state id peer-id 'failed (format "%s" reason)))

(add-hook 'meta-log-federation-peer-message-delivered-functions
          #'meta-log-federation-chat--delivered)
(add-hook 'meta-log-federation-peer-message-failed-functions
          #'meta-log-federation-chat--failed)

;;;; Sending

(defvar meta-log-federation-chat--sending nil
  "Non-nil while `meta-log-federation-chat-send' sends.
It records the message itself, so `meta-log-federation-chat--sent'
must not record it a second time.")

(defun meta-log-federation-chat--sent (peer-id text id)
  "Record TEXT, sent to PEER-ID as event ID from outside a conversation.
Called by `meta-log-federation-send-peer-message', so that messages
sent by a command or by code show in the conversation too, when
`meta-log-federation-chat-notify' keeps conversations.  The text is
made safe to show, like a peer's."
  (when (and (not meta-log-federation-chat--sending)
             (memq 'conversation meta-log-federation-chat-notify))
    (meta-log-federation-chat--add
     peer-id (meta-log-federation-chat-entry-create
              :direction 'out :time (float-time)
              :text (meta-log-federation-chat--safe-text text)
              :id id :state 'sent))))

(defun meta-log-federation-chat-send (peer-id text)
  "Send TEXT to PEER-ID and record it in the conversation; return the entry.
A send that signals (federation not running, not connected, message
too large, unknown peer) is recorded as failed with the reason, and
the reason is shown; the text stays in the conversation."
  (let ((entry (meta-log-federation-chat-entry-create
                :direction 'out :time (float-time) :text text)))
    (condition-case err
        (setf (meta-log-federation-chat-entry-id entry)
              (let ((meta-log-federation-chat--sending t))
                (meta-log-federation-send-peer-message peer-id text))
              (meta-log-federation-chat-entry-state entry) 'sent)
      (error
       (setf (meta-log-federation-chat-entry-state entry) 'failed
             (meta-log-federation-chat-entry-reason entry) (error-message-string err))
       (message "meta-log-federation: message to %s not sent: %s"
                (meta-log-federation-chat--label peer-id) (error-message-string err))))
    (meta-log-federation-chat--add peer-id entry)
    ;; What the person typed shows at once.
    (meta-log-federation-chat--flush)
    entry))

;;;; The conversation buffer

(defvar-local meta-log-federation-chat--peer nil
  "Peer id of the conversation in this buffer.")

(defvar-local meta-log-federation-chat--prompt-start nil
  "Marker at the start of the input prompt, where history is inserted.")

(defvar-local meta-log-federation-chat--input-start nil
  "Marker where the text typed by the person starts.")

(defvar-local meta-log-federation-chat--last-day nil
  "Day (\"%F\") of the last entry shown, to mark when the day changes.")

(defconst meta-log-federation-chat--prompt "> "
  "Prompt before the input line of a conversation buffer.")

(defvar meta-log-federation-chat-mode-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "RET") #'meta-log-federation-chat-send-input)
    (define-key map (kbd "C-c C-i") #'meta-log-federation-inbox)
    map)
  "Keymap of `meta-log-federation-chat-mode'.")

(define-derived-mode meta-log-federation-chat-mode text-mode "Fed-Chat"
  "Major mode of a conversation with one federation peer.
The history is read-only; type a message after the prompt at the end
and press RET to send it, encrypted, to the peer.
\\{meta-log-federation-chat-mode-map}"
  (setq-local truncate-lines nil)
  (setq-local word-wrap t)
  (add-hook 'window-buffer-change-functions #'meta-log-federation-chat--seen nil t)
  (add-hook 'kill-buffer-hook #'meta-log-federation-chat--forget-buffer nil t))

(defun meta-log-federation-chat--seen (&rest _)
  "Mark this buffer's conversation as read (it is being shown)."
  (when meta-log-federation-chat--peer
    (meta-log-federation-chat-mark-read meta-log-federation-chat--peer)))

(defun meta-log-federation-chat--forget-buffer ()
  "Detach the conversation from this buffer, which is being killed."
  (let ((c (and meta-log-federation-chat--peer
                (meta-log-federation-chat--conversation meta-log-federation-chat--peer))))
    (when (and c (eq (meta-log-federation-chat-conversation-buffer c) (current-buffer)))
      (setf (meta-log-federation-chat-conversation-buffer c) nil))))

(defun meta-log-federation-chat-mark-read (peer-id)
  "Mark the messages from PEER-ID as seen."
  (let ((c (meta-log-federation-chat--conversation peer-id)))
    (when (and c (> (meta-log-federation-chat-conversation-unread c) 0))
      (setf (meta-log-federation-chat-conversation-unread c) 0)
      (meta-log-federation-chat--changed peer-id))))

(defun meta-log-federation-chat--state-text (entry)
  "Return the status shown after the outgoing ENTRY."
  (pcase (meta-log-federation-chat-entry-state entry)
    ('sent (propertize "  (sent)" 'face 'shadow))
    ('delivered (propertize "  (delivered)" 'face 'success))
    ('failed (propertize (concat "  (FAILED: "
                                 (or (meta-log-federation-chat-entry-reason entry) "unknown")
                                 ")")
                         'face 'error))
    (_ "")))

(defvar meta-log-federation-chat--time-texts nil
  "The last times formatted: ((FORMAT SECOND . TEXT) ...), a few at most.")

(defun meta-log-federation-chat--time-text (format time)
  "Return `format-time-string' of FORMAT and TIME, reusing the last result.
A burst of messages falls within a few seconds: each second is
formatted once, not once per message.  FORMAT with sub-second
fields (%N) is formatted every time."
  (if (string-search "N" format)
      (format-time-string format time)
    (let* ((second (floor time))
           (cached (assoc format meta-log-federation-chat--time-texts)))
      (if (and cached (eql (cadr cached) second))
          (cddr cached)
        (let ((text (format-time-string format second)))
          (setq meta-log-federation-chat--time-texts
                (cons (cons format (cons second text))
                      (seq-take (assoc-delete-all format meta-log-federation-chat--time-texts)
                                3)))
          text)))))

(defun meta-log-federation-chat--entry-text (entry)
  "Return the lines showing ENTRY: time, who, text and, if sent, its state.
The state is marked with the property `meta-log-federation-chat-state'."
  (let* ((time (meta-log-federation-chat-entry-time entry))
         (stamp (meta-log-federation-chat--time-text
                 meta-log-federation-chat-time-format time))
         (indent (make-string (+ 3 (length stamp)) ?\s))
         (out (eq (meta-log-federation-chat-entry-direction entry) 'out))
         (who (if out
                  (propertize "you" 'face 'meta-log-federation-chat-self)
                (propertize meta-log-federation-chat--shown-label
                            'face 'meta-log-federation-chat-peer)))
         (body (string-join (split-string (meta-log-federation-chat-entry-text entry) "\n")
                            (concat "\n" indent))))
    (concat (propertize (concat "[" stamp "] ") 'face 'shadow)
            who ": " body
            (if out
                (propertize (meta-log-federation-chat--state-text entry)
                            'meta-log-federation-chat-state entry)
              "")
            "\n")))

(defun meta-log-federation-chat--insert-history (text)
  "Insert TEXT, read-only, at the end of the history (before the prompt)."
  (let ((inhibit-read-only t))
    (save-excursion
      (goto-char meta-log-federation-chat--prompt-start)
      (insert-before-markers (propertize text 'read-only t 'front-sticky '(read-only))))))

(defun meta-log-federation-chat--insert-entries (buffer entries)
  "Show ENTRIES, oldest first, at the end of BUFFER's history.
A line names the day before the first entry of each new day.  The text
of all ENTRIES is inserted at once: a burst is one insertion."
  (with-current-buffer buffer
    (let ((texts nil))
      (dolist (entry entries)
        (let* ((time (meta-log-federation-chat-entry-time entry))
               (day (meta-log-federation-chat--time-text "%F" time)))
          (unless (equal day meta-log-federation-chat--last-day)
            (setq meta-log-federation-chat--last-day day)
            (push (propertize (concat "--- " (format-time-string "%A %F" time) " ---\n")
                              'face 'shadow)
                  texts))
          (push (meta-log-federation-chat--entry-text entry) texts)))
      (when texts
        (meta-log-federation-chat--insert-history
         (apply #'concat (nreverse texts)))))))

(defun meta-log-federation-chat--redraw-states (buffer entries pending)
  "Show the new states of the outgoing ENTRIES in BUFFER, in one pass.
Entries in PENDING are not in the buffer yet: they are left to be
inserted with their state.  The search goes from the end, since
receipts concern recent messages, and stops when every entry is done."
  (let ((todo (make-hash-table :test #'eq)))
    (dolist (entry entries)
      (puthash entry t todo))
    (when entries
      (dolist (entry pending)
        (remhash entry todo)))
    (when (> (hash-table-count todo) 0)
      (with-current-buffer buffer
        (let ((inhibit-read-only t)
              (end meta-log-federation-chat--prompt-start))
          (save-excursion
            (while (and (> (hash-table-count todo) 0) (> end (point-min)))
              (let* ((beg (previous-single-property-change
                           end 'meta-log-federation-chat-state nil (point-min)))
                     (entry (get-text-property beg 'meta-log-federation-chat-state)))
                (when (and entry (gethash entry todo))
                  (remhash entry todo)
                  (goto-char beg)
                  (delete-region beg end)
                  (insert (propertize (meta-log-federation-chat--state-text entry)
                                      'meta-log-federation-chat-state entry
                                      'read-only t 'front-sticky '(read-only))))
                (setq end beg)))))))))

(defun meta-log-federation-chat--redraw (buffer conversation)
  "Show CONVERSATION's history in BUFFER again, keeping the typed input."
  (with-current-buffer buffer
    (let ((inhibit-read-only t)
          (input (buffer-substring meta-log-federation-chat--input-start (point-max)))
          (at-input (>= (point) meta-log-federation-chat--input-start))
          (column (- (point) meta-log-federation-chat--input-start)))
      (erase-buffer)
      (setq meta-log-federation-chat--last-day nil
            meta-log-federation-chat--shown-label
            (meta-log-federation-chat--label meta-log-federation-chat--peer))
      (insert (propertize (concat "Conversation with " meta-log-federation-chat--shown-label
                                  "\npeer id " meta-log-federation-chat--peer
                                  "\nType a message after the prompt and press RET to send it.\n\n")
                          'face 'shadow 'read-only t 'front-sticky '(read-only)))
      (setq meta-log-federation-chat--prompt-start (point-marker))
      (insert (propertize meta-log-federation-chat--prompt
                          'face 'meta-log-federation-chat-prompt
                          'read-only t 'front-sticky '(read-only) 'rear-nonsticky t
                          'field 'prompt))
      (setq meta-log-federation-chat--input-start (point-marker))
      (insert input)
      (meta-log-federation-chat--insert-entries
       buffer (reverse (meta-log-federation-chat-conversation-entries conversation)))
      (goto-char (if at-input
                     (min (point-max) (+ meta-log-federation-chat--input-start (max 0 column)))
                   (point-max)))
      ;; Windows showing the buffer would otherwise be left at its top.
      (dolist (window (get-buffer-window-list buffer nil t))
        (set-window-point window (point))))))

(defun meta-log-federation-chat--buffer (peer-id)
  "Return the conversation buffer of PEER-ID, making it if needed."
  (let* ((c (meta-log-federation-chat--conversation peer-id t))
         (buffer (meta-log-federation-chat-conversation-buffer c)))
    (if (buffer-live-p buffer)
        buffer
      (setq buffer (generate-new-buffer
                    (concat "*meta-log-federation: "
                            (meta-log-federation-chat--buffer-title peer-id) "*")))
      (setf (meta-log-federation-chat-conversation-buffer c) buffer)
      (with-current-buffer buffer
        (meta-log-federation-chat-mode)
        (setq meta-log-federation-chat--peer peer-id)
        (setq meta-log-federation-chat--input-start (point-min-marker))
        (meta-log-federation-chat--redraw buffer c))
      buffer)))

(defun meta-log-federation-chat-input ()
  "Return the text typed after the prompt of this conversation buffer."
  (unless meta-log-federation-chat--peer
    (user-error "Not a conversation buffer: open one with M-x meta-log-federation-chat"))
  (buffer-substring-no-properties meta-log-federation-chat--input-start (point-max)))

(defun meta-log-federation-chat-send-input ()
  "Send the text typed after the prompt to this buffer's peer.
The input line is cleared and the message is added to the history with
its state; a message that could not be sent is recorded as failed."
  (interactive)
  (let ((text (string-trim (meta-log-federation-chat-input))))
    (if (string-empty-p text)
        (message "meta-log-federation: type a message after the prompt, then RET")
      (let ((inhibit-read-only t))
        (delete-region meta-log-federation-chat--input-start (point-max)))
      (meta-log-federation-chat-send meta-log-federation-chat--peer text)
      (goto-char (point-max)))))

;;;; Commands

(defun meta-log-federation-chat--read-peer (prompt)
  "Read a peer with completion, showing PROMPT: known peers and conversations."
  (let* ((ids (delete-dups
               (append (mapcar #'meta-log-federation-chat-conversation-peer
                               (meta-log-federation-chat-conversations))
                       (and (meta-log-federation-running-p)
                            (meta-log-federation-discover-peers)))))
         (table (mapcar (lambda (id)
                          (cons (concat (meta-log-federation-chat--label id) "  " id) id))
                        ids)))
    (unless table
      (user-error "No peer known yet: start federation (M-x meta-log-federation-init) and wait for peers"))
    (cdr (assoc (completing-read prompt table nil t) table))))

(defun meta-log-federation-chat (peer-id)
  "Open the conversation with PEER-ID, ready to type a message.
Return its buffer."
  (interactive (list (meta-log-federation-chat--read-peer "Conversation with: ")))
  (meta-log-federation--check-peer-id peer-id)
  (let ((buffer (meta-log-federation-chat--buffer peer-id)))
    (pop-to-buffer buffer)
    (goto-char (point-max))
    (meta-log-federation-chat-mark-read peer-id)
    buffer))

(defun meta-log-federation-peer-list-open-conversation ()
  "Open the conversation with the peer on this line of the peers buffer."
  (interactive)
  (meta-log-federation-chat (meta-log-federation--peer-at-point)))

(provide 'meta-log-federation-chat)
;;; meta-log-federation-chat.el ends here
