;;; meta-log-federation-peer-list.el --- A buffer listing the federation's peers  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; `meta-log-federation-list-peers' shows every known peer: name, short
;; id, status, last seen, trust, peer messages in and out, sync events
;; in, the delivery state of the messages sent to it (waiting,
;; delivered, failed).  A key held because it claims a name another key holds (trust
;; state `conflict') has a row of its own, saying which name it claims
;; and which key it would replace; so has a blocked key no peer uses
;; now.  It refreshes by itself when peers change.  Keys: t trust,
;; u forget trust, b block, m conversation, g refresh.
;;
;; `meta-log-federation-mode-line-mode' shows the connection state and
;; the number of peers online in the mode line; federation turns it on
;; when `meta-log-federation-show-in-mode-line' is non-nil.

;;; Code:

(require 'tabulated-list)
(require 'cl-lib)
(require 'subr-x)
(require 'meta-log-federation-custom)
(require 'meta-log-federation-node)
(require 'meta-log-federation-sync-status)

(autoload 'meta-log-federation-peer-list-open-conversation "meta-log-federation-chat"
  "Open the conversation with the peer on this line of the peers buffer." t)

(defcustom meta-log-federation-show-in-mode-line t
  "If non-nil, federation shows its state in the mode line while it runs."
  :type 'boolean
  :group 'meta-log-federation)

(defconst meta-log-federation--peer-list-buffer "*meta-log-federation peers*"
  "Name of the peer list buffer.")

(defun meta-log-federation--age (time)
  "Return how long ago Unix TIME was, briefly (\"12s\", \"5m\", \"3h\")."
  (if (or (null time) (<= time 0))
      "never"
    (let ((s (max 0 (- (float-time) time))))
      (cond ((< s 60) (format "%ds ago" s))
            ((< s 3600) (format "%dm ago" (/ s 60)))
            ((< s 86400) (format "%dh ago" (/ s 3600)))
            (t (format-time-string "%F" time))))))

(defun meta-log-federation--trust-face (trust)
  "Return the face the trust state TRUST is shown with."
  (if (memq trust '(blocked conflict)) 'error 'default))

(declare-function meta-log-federation--links-list "meta-log-federation-module")

(defun meta-log-federation--peer-path (peer-id links)
  "Return how PEER-ID is reached, given LINKS.
LINKS are as `meta-log-federation-peer-links' returns them.
The path of an up direct link (host, srflx, relay or tcp), \"connecting\"
while one is set up, else \"broker\"."
  (let ((link (cl-find peer-id links
                       :key (lambda (l) (plist-get l :peer-id)) :test #'equal)))
    (pcase (plist-get link :state)
      ('up (propertize (symbol-name (plist-get link :path)) 'face 'success))
      ('connecting "connecting")
      (_ (propertize "broker" 'face 'shadow)))))

(defun meta-log-federation--peer-entry (peer &optional links)
  "Return the `tabulated-list-entries' item of PEER.
LINKS are the direct links, as `meta-log-federation-peer-links' returns them."
  (list (plist-get peer :peer-id)
        (vector (meta-log-federation--safe-name (plist-get peer :name))
                (meta-log-federation--short-id (plist-get peer :peer-id))
                (propertize (symbol-name (plist-get peer :status))
                            'face (pcase (plist-get peer :status)
                                    ('online 'success)
                                    ('stale 'warning)
                                    (_ 'shadow)))
                (meta-log-federation--age (truncate (plist-get peer :last-seen)))
                (propertize (symbol-name (plist-get peer :trust))
                            'face (meta-log-federation--trust-face (plist-get peer :trust)))
                (number-to-string (plist-get peer :messages-in))
                (number-to-string (plist-get peer :messages-out))
                (number-to-string (or (plist-get peer :sync-in) 0))
                (meta-log-federation-outbox-peer-summary (plist-get peer :peer-id))
                (meta-log-federation--peer-path (plist-get peer :peer-id) links)
                "")))

(defun meta-log-federation--held-key-entry (entry)
  "Return the row of the trust store ENTRY, a key the peer table lacks.
A held key (state `conflict') says which name it claims and which key
it would replace."
  (let ((state (plist-get entry :state))
        (replaces (plist-get entry :replaces)))
    (list (plist-get entry :peer-id)
          (vector (meta-log-federation--safe-name (plist-get entry :name))
                  (meta-log-federation--short-id (plist-get entry :peer-id))
                  (propertize "-" 'face 'shadow)
                  "never"
                  (propertize (symbol-name state)
                              'face (meta-log-federation--trust-face state))
                  "0" "0" "0" "" "-"
                  (if (eq state 'conflict)
                      (format "claims %s, held; would replace %s"
                              (meta-log-federation--safe-name (plist-get entry :name))
                              (if replaces (meta-log-federation--short-id replaces) "?"))
                    "")))))

(defun meta-log-federation--peer-list-entries ()
  "Return the rows of the peer list.
Every peer the peer table knows, then every held (`conflict') or
blocked key of the trust store that the peer table lacks."
  (when (meta-log-federation-running-p)
    (let* ((peers (meta-log-federation-peers))
           (ids (mapcar (lambda (p) (plist-get p :peer-id)) peers))
           (links (and (fboundp 'meta-log-federation--links-list)
                       (meta-log-federation--links-list))))
      (append
       (mapcar (lambda (p) (meta-log-federation--peer-entry p links)) peers)
       (mapcar #'meta-log-federation--held-key-entry
               (cl-remove-if (lambda (e)
                               (or (member (plist-get e :peer-id) ids)
                                   (not (memq (plist-get e :state) '(conflict blocked)))))
                             (meta-log-federation-trust-entries)))))))

(defvar meta-log-federation-peer-list-mode-map
  (let ((map (make-sparse-keymap)))
    (define-key map "t" #'meta-log-federation-peer-list-trust)
    (define-key map "u" #'meta-log-federation-peer-list-untrust)
    (define-key map "b" #'meta-log-federation-peer-list-block)
    (define-key map "m" #'meta-log-federation-peer-list-open-conversation)
    map)
  "Keymap of `meta-log-federation-peer-list-mode'.")

(define-derived-mode meta-log-federation-peer-list-mode tabulated-list-mode
  "Federation Peers"
  "Major mode listing the federation's peers.
\"In\" and \"Out\" count peer messages received from and sent to each
peer; \"Sync in\" counts the CanvasL sync events received from it.  A
row with trust `conflict' is a key held because it claims a name
another key holds: its note names the key it would replace; trust it
with \\[meta-log-federation-peer-list-trust] if it is genuine, block it with \\[meta-log-federation-peer-list-block] if not.
\"Path\" is how the peer is reached: a direct link's path (host,
srflx, relay or tcp) or the broker.

\\{meta-log-federation-peer-list-mode-map}"
  (setq tabulated-list-format
        [("Name" 18 t) ("Id" 13 t) ("Status" 8 t) ("Last seen" 12 nil)
         ("Trust" 9 t) ("In" 6 nil :right-align t) ("Out" 6 nil :right-align t)
         ("Sync in" 8 nil :right-align t) ("Delivery" 24 nil) ("Path" 10 t) ("Note" 0 nil)])
  (setq tabulated-list-sort-key '("Name" . nil))
  (setq tabulated-list-entries #'meta-log-federation--peer-list-entries)
  (add-hook 'tabulated-list-revert-hook #'ignore nil t)
  (tabulated-list-init-header))

(defun meta-log-federation--peer-at-point ()
  "Return the peer id on the current line, or signal a `user-error'."
  (or (tabulated-list-get-id)
      (user-error "No peer on this line")))

(defun meta-log-federation-peer-list-trust ()
  "Trust the peer on this line."
  (interactive)
  (meta-log-federation-trust-peer (meta-log-federation--peer-at-point)))

(defun meta-log-federation-peer-list-untrust ()
  "Forget the trust decision about the peer on this line."
  (interactive)
  (meta-log-federation-untrust-peer (meta-log-federation--peer-at-point)))

(defun meta-log-federation-peer-list-block ()
  "Block the peer on this line, after confirmation."
  (interactive)
  (let ((peer (meta-log-federation--peer-at-point)))
    (when (yes-or-no-p (format "Block %s? " (meta-log-federation--peer-label peer)))
      (meta-log-federation-block-peer peer))))

(defun meta-log-federation-peer-list-message (text)
  "Send TEXT to the peer on this line."
  (interactive (list (read-string (format "Message to %s: "
                                          (meta-log-federation--peer-label
                                           (meta-log-federation--peer-at-point))))))
  (let ((peer (meta-log-federation--peer-at-point)))
    (meta-log-federation-send-peer-message peer text)
    (message "meta-log-federation: sent to %s" (meta-log-federation--peer-label peer))))

(defcustom meta-log-federation-peer-list-refresh-delay 0.5
  "Seconds the peers buffer waits after a change before it is redrawn.
Changes arriving meanwhile are shown by one redraw: a flood of new
peers redraws the buffer a few times a second, not once per event."
  :type 'number
  :group 'meta-log-federation)

(defvar meta-log-federation--peer-list-timer nil
  "Timer that redraws the peers buffer, or nil when none is due.")

(defun meta-log-federation--refresh-peer-list ()
  "Redraw the peer list buffer soon, and only once until it is redrawn."
  (unless (timerp meta-log-federation--peer-list-timer)
    (setq meta-log-federation--peer-list-timer
          (run-at-time meta-log-federation-peer-list-refresh-delay nil
                       #'meta-log-federation--refresh-peer-list-now))))

(defun meta-log-federation--refresh-peer-list-now ()
  "Redraw the peer list buffer if it exists, keeping point on its peer."
  (setq meta-log-federation--peer-list-timer nil)
  (let ((buffer (get-buffer meta-log-federation--peer-list-buffer)))
    (when (buffer-live-p buffer)
      (with-current-buffer buffer
        (tabulated-list-print t)))))

(defun meta-log-federation-list-peers ()
  "Show the federation's peers in a buffer that refreshes by itself."
  (interactive)
  (let ((buffer (get-buffer-create meta-log-federation--peer-list-buffer)))
    (with-current-buffer buffer
      (meta-log-federation-peer-list-mode)
      (tabulated-list-print))
    (add-hook 'meta-log-federation-peers-changed-hook #'meta-log-federation--refresh-peer-list)
    (pop-to-buffer buffer)
    buffer))

;;;; Mode line

(defun meta-log-federation-mode-line-string ()
  "Return the mode line text: connection state and peers online."
  (cond ((not (meta-log-federation-running-p)) "")
        ((meta-log-federation-connected-p)
         (concat (format " Fed[%d]" (meta-log-federation-peers-online))
                 (meta-log-federation-sync-mode-line-problem)))
        (t " Fed[offline]")))

(defvar meta-log-federation--mode-line-entry
  '(:eval (meta-log-federation-mode-line-string))
  "The mode line construct added to `global-mode-string'.")
(put 'meta-log-federation--mode-line-entry 'risky-local-variable t)

(defun meta-log-federation--update-mode-line (&rest _)
  "Redisplay the mode line after a federation change."
  (force-mode-line-update t))

(define-minor-mode meta-log-federation-mode-line-mode
  "Show the federation's connection state and peers online in the mode line."
  :global t
  :group 'meta-log-federation
  (if meta-log-federation-mode-line-mode
      (progn
        (unless (member 'meta-log-federation--mode-line-entry global-mode-string)
          (setq global-mode-string
                (append (or global-mode-string '("")) '(meta-log-federation--mode-line-entry))))
        (add-hook 'meta-log-federation-peers-changed-hook #'meta-log-federation--update-mode-line)
        (add-hook 'meta-log-federation-mqtt-connected-hook #'meta-log-federation--update-mode-line)
        (add-hook 'meta-log-federation-mqtt-disconnected-hook #'meta-log-federation--update-mode-line))
    (setq global-mode-string (delete 'meta-log-federation--mode-line-entry global-mode-string))
    (remove-hook 'meta-log-federation-peers-changed-hook #'meta-log-federation--update-mode-line)
    (remove-hook 'meta-log-federation-mqtt-connected-hook #'meta-log-federation--update-mode-line)
    (remove-hook 'meta-log-federation-mqtt-disconnected-hook #'meta-log-federation--update-mode-line)))

(provide 'meta-log-federation-peer-list)
;;; meta-log-federation-peer-list.el ends here
