;;; meta-log-federation-peer-list.el --- A buffer listing the federation's peers  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; `meta-log-federation-list-peers' shows every known peer: name, short
;; id, status, last seen, trust, messages in and out, and the delivery
;; state of the messages sent to it (waiting, delivered, failed).  It refreshes by
;; itself when peers change.  Keys: t trust, u forget trust, b block,
;; m message, g refresh.
;;
;; `meta-log-federation-mode-line-mode' shows the connection state and
;; the number of peers online in the mode line; federation turns it on
;; when `meta-log-federation-show-in-mode-line' is non-nil.

;;; Code:

(require 'tabulated-list)
(require 'subr-x)
(require 'meta-log-federation-custom)
(require 'meta-log-federation-node)

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

(defun meta-log-federation--peer-entry (peer)
  "Return the `tabulated-list-entries' item of PEER."
  (let ((name (plist-get peer :name)))
    (list (plist-get peer :peer-id)
          (vector (if (string-empty-p name) "?" name)
                  (meta-log-federation--short-id (plist-get peer :peer-id))
                  (propertize (symbol-name (plist-get peer :status))
                              'face (pcase (plist-get peer :status)
                                      ('online 'success)
                                      ('stale 'warning)
                                      (_ 'shadow)))
                  (meta-log-federation--age (truncate (plist-get peer :last-seen)))
                  (propertize (symbol-name (plist-get peer :trust))
                              'face (if (memq (plist-get peer :trust) '(blocked conflict))
                                        'error
                                      'default))
                  (number-to-string (plist-get peer :messages-in))
                  (number-to-string (plist-get peer :messages-out))
                  (meta-log-federation-outbox-peer-summary (plist-get peer :peer-id))))))

(defun meta-log-federation--peer-list-entries ()
  "Return the rows of the peer list."
  (when (meta-log-federation-running-p)
    (mapcar #'meta-log-federation--peer-entry (meta-log-federation-peers))))

(defvar meta-log-federation-peer-list-mode-map
  (let ((map (make-sparse-keymap)))
    (define-key map "t" #'meta-log-federation-peer-list-trust)
    (define-key map "u" #'meta-log-federation-peer-list-untrust)
    (define-key map "b" #'meta-log-federation-peer-list-block)
    (define-key map "m" #'meta-log-federation-peer-list-message)
    map)
  "Keymap of `meta-log-federation-peer-list-mode'.")

(define-derived-mode meta-log-federation-peer-list-mode tabulated-list-mode
  "Federation Peers"
  "Major mode listing the federation's peers.
\\{meta-log-federation-peer-list-mode-map}"
  (setq tabulated-list-format
        [("Name" 18 t) ("Id" 13 t) ("Status" 8 t) ("Last seen" 12 nil)
         ("Trust" 9 t) ("In" 6 nil :right-align t) ("Out" 6 nil :right-align t)
         ("Delivery" 30 nil)])
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

(defun meta-log-federation--refresh-peer-list ()
  "Refresh the peer list buffer if it is shown, keeping point on its peer."
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
         (format " Fed[%d]" (meta-log-federation-peers-online)))
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
