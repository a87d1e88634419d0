;;; meta-log-federation-nat-peer.el --- A batch Emacs peer inside a NAT test namespace  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; Run by tests/nat_emacs.rs inside a home network namespace, behind a
;; simulated NAT router:
;;   ip netns exec HOME emacs --batch -Q -L lisp -L test
;;      --eval (setq nat-peer-dir ... nat-peer-broker ... SETTINGS...)
;;      -l test/meta-log-federation-nat-peer.el
;; SETTINGS are the package's own options (`meta-log-federation-ice-servers',
;; `meta-log-federation-tcp-listen', `meta-log-federation-tcp-advertise',
;; ...): the peer is the real package, nothing is stubbed.
;;
;; It reports on standard output, one JSON object a line, what the test
;; asserts:
;;   {"event":"ready","peer_id":ID}          federation runs, connected
;;   {"event":"connecting","peer":ID,"at":T} it asks for a link (T: `float-time')
;;   {"event":"link-up","peer":ID,"path":P,"at":T}
;;                                           a direct link came up (P is
;;                                           host, srflx, relay or tcp)
;;   {"event":"link-down","peer":ID,"reason":R}
;;   {"event":"counters",NAME:COUNT...}      after a link-down: the refusals and
;;                                           events carried, as
;;                                           `meta-log-federation-direct-counters'
;;   {"event":"message","from":ID,"text":T}  a peer message arrived
;;   {"event":"sent","count":N}              all N messages were handed over
;;   {"event":"link","state":S,"path":P,"bytes_out":B}
;;                                           the link to the recipient then,
;;                                           from `meta-log-federation-peer-links'
;;   {"event":"delivered","count":N}         receipts so far
;;
;; With `nat-peer-send-to' set to a peer id, it opens a link to that peer
;; (`meta-log-federation-connect-to-peer') once the peer is online, and
;; when the link is up (or, with `nat-peer-send-after' set to `link-down',
;; when the attempt failed) sends `nat-peer-count' messages "nat-NNN".

;;; Code:

(require 'cl-lib)
(require 'meta-log-federation)

(defvar nat-peer-dir nil "Directory for this peer's files (identity, trust, sync).")
(defvar nat-peer-broker nil "The broker's URL, such as \"mqtt://198.18.0.1:1883\".")
(defvar nat-peer-send-to nil "Nil, or the peer id to link to and send messages to.")
(defvar nat-peer-count 100 "How many messages to send.")
(defvar nat-peer-send-after 'link-up
  "When to send: `link-up' (over the link) or `link-down' (the attempt failed).")
(defvar nat-peer-sent nil "Non-nil once the messages were sent.")
(defvar nat-peer-delivered 0 "Receipts for our messages.")

(defun nat-peer-report (event &optional fields)
  "Write EVENT with FIELDS (an alist of (KEY . VALUE)) as one JSON line on stdout.
Written straight to /dev/stdout: `princ' in batch Emacs is buffered
until exit, and the test reads the lines while the peer runs."
  (let ((line (concat (json-serialize (cons (cons 'event event) fields)) "\n"))
        ;; Both peers write "/dev/stdout": a lock file would make them wait for each other.
        (create-lockfiles nil))
    (write-region line nil "/dev/stdout" t 'silent)))

(defun nat-peer-send ()
  "Send the messages to `nat-peer-send-to', once."
  (unless nat-peer-sent
    (setq nat-peer-sent t)
    (dotimes (i nat-peer-count)
      (meta-log-federation-send-peer-message nat-peer-send-to (format "nat-%03d" i)))
    (nat-peer-report "sent" `((count . ,nat-peer-count)))
    (nat-peer-report-link)))

(defun nat-peer-report-link ()
  "Report the link to `nat-peer-send-to' from `meta-log-federation-peer-links'."
  (let ((link (cl-find nat-peer-send-to (meta-log-federation-peer-links)
                       :key (lambda (l) (plist-get l :peer-id)) :test #'equal)))
    (nat-peer-report "link" `((state . ,(format "%s" (plist-get link :state)))
                              (path . ,(format "%s" (plist-get link :path)))
                              (bytes_out . ,(or (plist-get link :bytes-out) 0))))))

(setq meta-log-federation-identity-file (expand-file-name "identity.org" nat-peer-dir)
      meta-log-federation-trust-file (expand-file-name "trust.json" nat-peer-dir)
      meta-log-federation-sync-directory (expand-file-name "sync/" nat-peer-dir)
      meta-log-federation-sync-state-directory (expand-file-name "sync-state/" nat-peer-dir)
      meta-log-federation-delivery-directory (expand-file-name "delivery/" nat-peer-dir)
      meta-log-federation-display-name (file-name-nondirectory
                                        (directory-file-name nat-peer-dir))
      meta-log-federation-verbose t)

(add-hook 'meta-log-federation-link-up-functions
          (lambda (peer path)
            (nat-peer-report "link-up" `((peer . ,peer) (path . ,(symbol-name path))
                                         (at . ,(float-time))))
            (when (and (equal peer nat-peer-send-to) (eq nat-peer-send-after 'link-up))
              (nat-peer-send))))

(add-hook 'meta-log-federation-link-down-functions
          (lambda (peer reason)
            (nat-peer-report "link-down" `((peer . ,peer) (reason . ,(format "%s" reason))))
            (nat-peer-report "counters" (meta-log-federation-direct-counters))
            (when (and (equal peer nat-peer-send-to) (eq nat-peer-send-after 'link-down))
              (nat-peer-send))))

(add-hook 'meta-log-federation-peer-online-functions
          (lambda (id _name)
            (when (equal id nat-peer-send-to)
              (nat-peer-report "connecting" `((peer . ,id) (at . ,(float-time))))
              (meta-log-federation-connect-to-peer id))))

(add-hook 'meta-log-federation-peer-message-functions
          (lambda (from text)
            (nat-peer-report "message" `((from . ,from) (text . ,text)))))

(add-hook 'meta-log-federation-peer-message-delivered-functions
          (lambda (_id _peer)
            (cl-incf nat-peer-delivered)
            (nat-peer-report "delivered" `((count . ,nat-peer-delivered)))))

(meta-log-federation-init (expand-file-name "blackboard.org" nat-peer-dir) nat-peer-broker)
(unless (meta-log-federation-wait-until #'meta-log-federation-connected-p 30)
  (message "nat-peer: not connected to %s after 30 s" nat-peer-broker)
  (kill-emacs 1))
(nat-peer-report "ready" `((peer_id . ,(plist-get (meta-log-federation-get-local-peer-identity)
                                                  :peer-id))))
(while t
  (meta-log-federation-wait-until #'ignore 1))

;;; meta-log-federation-nat-peer.el ends here
