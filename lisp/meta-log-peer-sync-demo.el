;;; meta-log-peer-sync-demo.el --- The prototype's peer sync demo commands  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; The commands of the prototype's peer sync demo, on the new engine:
;;
;;   M-x meta-log-peer-sync-demo-init            identity + federation + announce
;;   M-x meta-log-peer-sync-demo-sync-canvasl    share a CanvasL file
;;   M-x meta-log-peer-sync-demo-discover-peers  who is there
;;   M-x meta-log-peer-sync-demo-connect-peer    catch up with one peer
;;
;; Each also works from `emacs --batch' with its arguments given.

;;; Code:

(require 'meta-log-federation)

;;;###autoload
(defun meta-log-peer-sync-demo-init (&optional broker)
  "Set up this Emacs as a peer in one step: identity, federation, announcement.
BROKER is the broker URL (default: META_LOG_MQTT_BROKER, else
`meta-log-federation-mqtt-broker-url', else the embedded broker).
Return this peer's id."
  (interactive)
  (meta-log-federation-init nil broker)
  (meta-log-federation-wait-until #'meta-log-federation-connected-p 10)
  ;; Show the connection's own messages ("connected to ...") now, so the
  ;; line below is the last one in the echo area, not overwritten by them.
  (meta-log-federation-dispatch-pending)
  (let ((id (plist-get (meta-log-federation-get-local-peer-identity) :peer-id)))
    (when (meta-log-federation-connected-p)
      (meta-log-federation-announce-peer))
    (message "meta-log-peer-sync-demo: peer %s (%s) is %s"
             (meta-log-federation-effective-display-name) (substring id 0 12)
             (if (meta-log-federation-connected-p) "online" "waiting for the broker"))
    id))

;;;###autoload
(defun meta-log-peer-sync-demo-sync-canvasl (file)
  "Share the CanvasL FILE with the federation, or sync it now if it is shared.
Return its canvasl:// URL."
  (interactive (list (read-file-name "CanvasL file to sync: " nil nil t nil
                                     (lambda (f) (or (file-directory-p f)
                                                     (string-match-p "\\.\\(canvasl\\|jsonl\\)\\'" f))))))
  (let* ((file (expand-file-name file))
         (share (cl-find file (meta-log-federation-shared-canvasl-files 'brief)
                         :key (lambda (s) (plist-get s :path)) :test #'file-equal-p))
         (url (if share
                  (progn (meta-log-federation-canvasl-catch-up (plist-get share :url))
                         (plist-get share :url))
                (meta-log-federation-share-canvasl file))))
    (message "meta-log-peer-sync-demo: %s syncs as %s" (abbreviate-file-name file) url)
    url))

;;;###autoload
(defun meta-log-peer-sync-demo-discover-peers ()
  "Show the known peers and return their ids."
  (interactive)
  (let ((peers (meta-log-federation-peers)))
    (message "meta-log-peer-sync-demo: %s"
             (if peers
                 (mapconcat (lambda (p) (format "%s (%s)"
                                                (meta-log-federation--peer-label
                                                 (plist-get p :peer-id))
                                                (plist-get p :status)))
                            peers ", ")
               "no peers yet"))
    (mapcar (lambda (p) (plist-get p :peer-id)) peers)))

;;;###autoload
(defun meta-log-peer-sync-demo-connect-peer (peer-id)
  "Catch up with PEER-ID; return its details."
  (interactive (list (meta-log-federation--read-peer "Connect to peer: ")))
  (let ((peer (meta-log-federation-connect-to-peer peer-id)))
    (message "meta-log-peer-sync-demo: %s is %s; catching up"
             (meta-log-federation--peer-label peer-id) (plist-get peer :status))
    peer))

(provide 'meta-log-peer-sync-demo)
;;; meta-log-peer-sync-demo.el ends here
