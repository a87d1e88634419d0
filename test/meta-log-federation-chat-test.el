;;; meta-log-federation-chat-test.el --- Peer messages a person reads and answers  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; This Emacs is one peer, a batch Emacs running
;; test/meta-log-federation-test-peer.el the other ("bob"), both on the
;; run's private mosquitto.  Bob answers "echo:X" with "echoed:X" and
;; reports every message it receives as "MSG FROM TEXT".

;;; Code:

(require 'meta-log-federation-test-helpers)
(require 'meta-log-federation-federation-test)
(require 'meta-log-federation-chat)
(require 'meta-log-federation-chat-history)
(require 'meta-log-federation-inbox)

(defun meta-log-federation-chat-test-bob (&optional name)
  "Start a peer NAME (default \"bob\"); return its process once it is known."
  (let* ((bob (meta-log-federation-test-start-peer (or name "bob")))
         (bob-id (process-get bob 'peer-id)))
    (should (meta-log-federation-wait-until
             (lambda () (meta-log-federation-peer bob-id)) 20))
    bob))

(defun meta-log-federation-chat-test-buffer (peer-id)
  "Return the conversation buffer of PEER-ID, or nil."
  (let ((c (meta-log-federation-chat--conversation peer-id)))
    (and c (meta-log-federation-chat-conversation-buffer c))))

(defun meta-log-federation-chat-test-buffer-has (peer-id text)
  "Return non-nil if PEER-ID's conversation buffer shows TEXT."
  (let ((buffer (meta-log-federation-chat-test-buffer peer-id)))
    (and (buffer-live-p buffer)
         (with-current-buffer buffer (string-search text (buffer-string))))))

(defun meta-log-federation-chat-test-messages-log ()
  "Return the text of the *Messages* buffer (batch Emacs logs the echo area there)."
  (with-current-buffer (messages-buffer) (buffer-string)))

(defun meta-log-federation-chat-test-inbox-unread (peer-id)
  "Return the unread count the inbox shows for PEER-ID, leaving point on its line."
  (goto-char (point-min))
  (while (and (not (equal (tabulated-list-get-id) peer-id)) (not (eobp)))
    (forward-line 1))
  (and (equal (tabulated-list-get-id) peer-id)
       (aref (tabulated-list-get-entry) 1)))

(defun meta-log-federation-chat-test-type (buffer text)
  "Type TEXT after the prompt of the conversation BUFFER and press RET."
  (with-current-buffer buffer
    (goto-char (point-max))
    (insert text)
    (call-interactively #'meta-log-federation-chat-send-input)))

(ert-deftest chat::a-received-message-shows-with-no-hook-installed ()
  (meta-log-federation-test-with-federation
    (let* ((meta-log-federation-peer-message-functions nil)
           (meta-log-mqtt-peer-message-hook nil)
           (meta-log-federation-chat-notify '(echo-area conversation))
           ;; A name with a %-directive and a space (a right-to-left
           ;; override in a name is refused by the module: hostile-test).
           (bob (meta-log-federation-chat-test-bob "b%s o b"))
           (bob-id (process-get bob 'peer-id))
           (shown-name (string-replace "\u202e" "" (process-get bob 'name)))
           ;; The display helper's label, made safe: with the short id, no override.
           (label (meta-log-federation-chat--label bob-id)))
      (should (string-search (concat "(" (substring bob-id 0 12) ")") label))
      (should-not (string-search "\u202e" label))
      ;; Bob sends back a %-directive and a right-to-left override.
      (meta-log-federation-send-peer-message bob-id "echo:hi %s there\u202e!")
      (should (meta-log-federation-wait-until
               (lambda () (meta-log-federation-chat-test-buffer-has bob-id "echoed:hi %s there!"))
               20))
      (let ((buffer (meta-log-federation-chat-test-buffer bob-id)))
        (should (equal (buffer-name buffer)
                       (concat "*meta-log-federation: "
                               (replace-regexp-in-string "[% ]" "_" shown-name) "*")))
        (with-current-buffer buffer
          (should (eq major-mode 'meta-log-federation-chat-mode))
          (should-not (string-search "\u202e" (buffer-string)))
          ;; Who said it, with the short id, and when.
          (should (string-search (concat label ": echoed:hi %s there!") (buffer-string)))
          (should (string-match-p "^\\[[0-9][0-9]:[0-9][0-9]:[0-9][0-9]\\] " (buffer-string)))))
      (should (string-search (concat "message from " label ": echoed:hi %s there!")
                             (meta-log-federation-chat-test-messages-log)))
      (should (= 1 (meta-log-federation-chat-unread bob-id))))))

(ert-deftest chat::a-reply-typed-in-the-conversation-buffer-arrives ()
  (meta-log-federation-test-with-federation
    (let* ((me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
           (bob (meta-log-federation-chat-test-bob))
           (bob-id (process-get bob 'peer-id))
           (buffer nil))
      ;; The peers buffer's m opens the conversation with the peer at point.
      (with-current-buffer (meta-log-federation-list-peers)
        (goto-char (point-min))
        (while (and (not (equal (tabulated-list-get-id) bob-id)) (not (eobp)))
          (forward-line 1))
        (should (equal (tabulated-list-get-id) bob-id))
        (setq buffer (call-interactively
                      (lookup-key meta-log-federation-peer-list-mode-map "m"))))
      (should (eq (window-buffer (selected-window)) buffer))
      (should (eq buffer (meta-log-federation-chat-test-buffer bob-id)))
      (meta-log-federation-chat-test-type buffer "hello from the buffer")
      (should (equal (meta-log-federation-wait-until
                      (lambda () (meta-log-federation-test-peer-line
                                  bob (format "MSG %s \\(.*\\)" me)))
                      20)
                     "hello from the buffer"))
      (with-current-buffer buffer
        ;; The input line is empty again, the message is in the history.
        (should (equal (meta-log-federation-chat-input) ""))
        (should (string-search "you: hello from the buffer  (sent)" (buffer-string)))
        ;; Recorded once, not again by the send function it calls.
        (should (= 1 (how-many "hello from the buffer" (point-min) (point-max)))))
      ;; A message sent by code, not typed here, shows in the conversation too.
      (meta-log-federation-send-peer-message bob-id "sent by code")
      (should (meta-log-federation-wait-until
               (lambda ()
                 (with-current-buffer buffer
                   (string-search "you: sent by code" (buffer-string))))
               5))
      (with-current-buffer buffer
        ;; The history cannot be edited; the input line can.
        (goto-char (point-min))
        (should-error (insert "x") :type 'text-read-only)
        (goto-char (point-max))
        (insert "draft")
        (should (equal (meta-log-federation-chat-input) "draft"))))))

(ert-deftest chat::the-inbox-counts-unread-messages ()
  (meta-log-federation-test-with-federation
    (let* ((bob (meta-log-federation-chat-test-bob))
           (bob-id (process-get bob 'peer-id))
           (inbox (meta-log-federation-inbox)))
      (meta-log-federation-send-peer-message bob-id "echo:one")
      (meta-log-federation-send-peer-message bob-id "echo:two")
      (should (meta-log-federation-wait-until
               (lambda () (= 2 (meta-log-federation-chat-unread bob-id))) 20))
      (with-current-buffer inbox
        ;; The inbox follows the messages by itself.
        (should (meta-log-federation-wait-until
                 (lambda () (equal (meta-log-federation-chat-test-inbox-unread bob-id) "2"))
                 10))
        (should (string-search "echoed:" (aref (tabulated-list-get-entry) 3)))
        ;; RET opens the conversation, which marks it read.
        (let ((conversation (call-interactively #'meta-log-federation-inbox-open)))
          (should (eq conversation (meta-log-federation-chat-test-buffer bob-id)))))
      (should (= 0 (meta-log-federation-chat-unread bob-id)))
      (with-current-buffer inbox
        (should (meta-log-federation-wait-until
                 (lambda () (equal (meta-log-federation-chat-test-inbox-unread bob-id) "0"))
                 10))))))

(ert-deftest chat::a-failing-send-and-delivery-receipts-are-recorded ()
  (meta-log-federation-test-with-federation
    (let* ((bob (meta-log-federation-chat-test-bob))
           (bob-id (process-get bob 'peer-id))
           (buffer (meta-log-federation-chat bob-id))
           (too-large (concat "big:" (make-string 70000 ?x))))
      ;; Too large for an event: the module refuses it, the buffer says so
      ;; and keeps the text.
      (meta-log-federation-chat-test-type buffer too-large)
      (let ((entry (car (meta-log-federation-chat-conversation-entries
                         (meta-log-federation-chat--conversation bob-id)))))
        (should (eq (meta-log-federation-chat-entry-state entry) 'failed))
        (should (equal (meta-log-federation-chat-entry-text entry) too-large)))
      (with-current-buffer buffer
        (should (string-match-p "(FAILED: [^)]*large" (buffer-string))))
      ;; Receipts, as the delivery hooks report them.
      (meta-log-federation-chat-test-type buffer "first")
      (meta-log-federation-chat-test-type buffer "second")
      (let* ((entries (meta-log-federation-chat-conversation-entries
                       (meta-log-federation-chat--conversation bob-id)))
             (second (nth 0 entries))
             (first (nth 1 entries)))
        (should (stringp (meta-log-federation-chat-entry-id first)))
        (run-hook-with-args 'meta-log-federation-peer-message-delivered-functions
                            (meta-log-federation-chat-entry-id first) bob-id)
        (run-hook-with-args 'meta-log-federation-peer-message-failed-functions
                            (meta-log-federation-chat-entry-id second) bob-id "no receipt")
        ;; States show at the conversation's next redisplay (its timer's), all in one pass.
        (meta-log-federation-chat--flush)
        (with-current-buffer buffer
          (should (string-search "you: first  (delivered)" (buffer-string)))
          (should (string-search "you: second  (FAILED: no receipt)" (buffer-string)))))
      ;; Federation stopped: the send fails and is recorded.
      (meta-log-federation-shutdown)
      (meta-log-federation-chat-test-type buffer "after the end")
      (with-current-buffer buffer
        (should (string-match-p "you: after the end  (FAILED: [^)]*not running"
                                (buffer-string)))))))

(ert-deftest chat::notifications-off-still-run-the-hook ()
  (meta-log-federation-test-with-federation
    (let* ((got nil)
           (meta-log-federation-peer-message-functions
            (list (lambda (from text) (push (cons from text) got))))
           (meta-log-federation-chat-notify nil)
           (bob (meta-log-federation-chat-test-bob))
           (bob-id (process-get bob 'peer-id)))
      (meta-log-federation-send-peer-message bob-id "echo:quiet")
      (should (meta-log-federation-wait-until
               (lambda () (equal (cdr (assoc bob-id got)) "echoed:quiet")) 20))
      (should-not (meta-log-federation-chat--conversation bob-id))
      (should-not (string-search (concat "message from " (meta-log-federation--peer-label bob-id))
                                 (meta-log-federation-chat-test-messages-log))))))

(ert-deftest chat::the-history-file-is-private-and-read-back ()
  (let* ((dir (meta-log-federation-test-peer-dir "history"))
         (meta-log-federation-chat-history t)
         (meta-log-federation-chat-history-file (expand-file-name "keep/messages.json" dir))
         (meta-log-federation-chat--conversations (make-hash-table :test #'equal))
         (meta-log-federation-chat--history-loaded t)
         (peer (make-string 64 ?d)))
    (meta-log-federation-chat--add
     peer (meta-log-federation-chat-entry-create
           :direction 'in :time 1767225600.5 :text "hello\nsecond line" :state 'received))
    (meta-log-federation-chat--add
     peer (meta-log-federation-chat-entry-create
           :direction 'out :time 1767225601.0 :text "hi" :id (make-string 64 ?e)
           :state 'delivered))
    (setf (meta-log-federation-chat-conversation-unread
           (meta-log-federation-chat--conversation peer))
          1)
    (let ((file (meta-log-federation-chat-save-history)))
      (should (= (file-modes file) #o600))
      ;; Written under another name and renamed: nothing else is left.
      (should (equal (directory-files (file-name-directory file) nil "\\`[^.]\\|\\`\\.[^.]")
                     '("messages.json")))
      (let ((meta-log-federation-chat--conversations (make-hash-table :test #'equal))
            (meta-log-federation-chat--history-loaded nil))
        (should (= 1 (meta-log-federation-chat-load-history)))
        (let ((entries (reverse (meta-log-federation-chat-conversation-entries
                                 (meta-log-federation-chat--conversation peer)))))
          (should (equal (mapcar #'meta-log-federation-chat-entry-text entries)
                         '("hello\nsecond line" "hi")))
          (should (equal (mapcar #'meta-log-federation-chat-entry-state entries)
                         '(received delivered)))
          (should (equal (meta-log-federation-chat-entry-id (nth 1 entries)) (make-string 64 ?e))))
        (should (= 1 (meta-log-federation-chat-unread peer))))
      ;; A file that cannot be read is reported and never overwritten.
      (with-temp-file file (insert "{not json"))
      (let ((meta-log-federation-chat--history-loaded nil)
            (warned nil))
        (cl-letf (((symbol-function 'display-warning) (lambda (&rest _) (setq warned t))))
          (meta-log-federation-chat--history-flush))
        (should warned)
        (with-temp-buffer
          (insert-file-contents file)
          (should (equal (buffer-string) "{not json")))))))

(ert-deftest chat::a-burst-is-shown-at-once-and-old-messages-are-forgotten ()
  (let* ((meta-log-federation-chat-max-messages 10)
         (meta-log-federation-chat-notify '(echo-area conversation))
         (meta-log-federation-chat--conversations (make-hash-table :test #'equal))
         (peer (make-string 64 ?f))
         (buffer nil))
    (unwind-protect
        (progn
          (dotimes (i 12)
            (meta-log-federation-chat--received peer (format "m%d." (1+ i))))
          (meta-log-federation-chat--flush)
          (setq buffer (meta-log-federation-chat-test-buffer peer))
          (should (buffer-live-p buffer))
          (with-current-buffer buffer
            (should (= 10 (how-many "^\\[.*: m[0-9]+\\.$" (point-min) (point-max))))
            (should (string-search ": m3." (buffer-string)))
            (should (string-search ": m12." (buffer-string)))
            (should-not (string-search ": m2." (buffer-string))))
          ;; One notice for the burst, naming the newest message.
          (should (string-search "message from ffffffffffff: m12.  (and 11 more"
                                 (meta-log-federation-chat-test-messages-log)))
          (should (= 12 (meta-log-federation-chat-unread peer))))
      (when (buffer-live-p buffer) (kill-buffer buffer)))))

(ert-deftest chat::peer-text-is-made-safe-to-show ()
  (should (equal (meta-log-federation-chat--safe-text "a\e[31mb\u202ec\td\r\ne\u2066")
                 "a[31mbc d\ne"))
  (should (equal (meta-log-federation-chat--safe-text "one\ntwo three" 7) "one tw…"))
  (should (equal (meta-log-federation-chat--safe-text (propertize "x" 'invisible t))
                 "x"))
  (should-not (text-properties-at 0 (meta-log-federation-chat--safe-text
                                     (propertize "x" 'invisible t)))))

(provide 'meta-log-federation-chat-test)
;;; meta-log-federation-chat-test.el ends here
