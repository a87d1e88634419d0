;;; meta-log-federation-compat.el --- The prototype's federation names  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; Code written for the older pure-Elisp prototype calls these names with
;; these argument lists.  They run on the new engine; where the old
;; behaviour was broken (its publish never ran, its signatures could be
;; checked by nobody but the signer), they do the documented, working
;; thing instead.  `meta-log-federation-init', `-discover-peers',
;; `-sync-blackboard' and `-create-blackboard' are defined with the
;; rest of the package.

;;; Code:

(require 'meta-log-federation-node)

(declare-function meta-log-federation--federation-peer "meta-log-federation-module")
(declare-function meta-log-federation-identity-path "meta-log-federation-module")
(declare-function meta-log-federation-identity-peer-id "meta-log-federation-module")
(declare-function meta-log-federation--federation-peer-id "meta-log-federation-module")
(declare-function meta-log-federation--federation-announce "meta-log-federation-module")
(declare-function meta-log-federation--topic "meta-log-federation-module")

(defvar meta-log-federation-connect-peer-functions nil
  "Functions called with (PEER-ID) by `meta-log-federation-connect-to-peer'.
CanvasL sync adds its catch-up with that peer here.")

(defun meta-log-federation-announce-peer (&optional identity)
  "Announce this peer now (presence, retained, and an announcement).
IDENTITY, if given, must be the identity federation runs with (an
identity object or its peer id): the identity is chosen by
`meta-log-federation-init'.  Return the presence event's id."
  (interactive)
  (meta-log-federation--require-running)
  (when identity
    (let ((id (if (stringp identity) identity
                (meta-log-federation-identity-peer-id identity))))
      (unless (equal id (meta-log-federation--federation-peer-id))
        (signal 'meta-log-federation-error
                (list (format "Federation runs as %s, not %s: shut it down and call `meta-log-federation-init' with that identity in `meta-log-federation-identity'"
                              (meta-log-federation--federation-peer-id) id))))))
  (prog1 (meta-log-federation--federation-announce)
    (when (called-interactively-p 'interactive)
      (message "meta-log-federation: announced %s" (meta-log-federation-effective-display-name)))))

(defun meta-log-federation-get-local-peer-identity ()
  "Return this peer's identity as a plist.
Keys: :peer-id, :public-key (the same x-only key, hex), :name,
:address (the topic messages to this peer go to), :derivation-path and
:identity (the identity object, for signing)."
  (meta-log-federation--require-running)
  (let ((identity meta-log-federation-identity)
        (id (meta-log-federation--federation-peer-id)))
    (list :peer-id id
          :public-key id
          :name (meta-log-federation-effective-display-name)
          :address (meta-log-federation--topic meta-log-federation-topic-prefix 'messages id)
          :derivation-path (meta-log-federation-identity-path identity)
          :identity identity)))

;;;###autoload
(defun meta-log-federation-connect-to-peer (peer-id)
  "Open a direct link to PEER-ID and catch up with it; return its plist.
Checks that PEER-ID is known and not blocked, then runs
`meta-log-federation-connect-peer-functions': the direct link opens
\(meta-log-federation-direct.el; it returns at once, the link comes up
later and traffic uses the broker until then) and CanvasL sync catches
up with it.  Signals `meta-log-federation-unknown-peer' for a peer that
has not announced itself."
  (interactive (list (meta-log-federation--read-peer "Connect to peer: ")))
  (meta-log-federation--require-running)
  (meta-log-federation--check-peer-id peer-id)
  (let ((peer (meta-log-federation--federation-peer peer-id)))
    (unless peer
      (signal 'meta-log-federation-unknown-peer
              (list (format "Peer %s has not announced itself: see `meta-log-federation-discover-peers'"
                            peer-id))))
    (when (eq (plist-get peer :trust) 'blocked)
      (user-error "Peer %s is blocked: unblock it with `meta-log-federation-untrust-peer'"
                  (meta-log-federation--peer-label peer-id)))
    (meta-log-federation--run-hook-safely 'meta-log-federation-connect-peer-functions peer-id)
    (when (called-interactively-p 'interactive)
      (message "meta-log-federation: %s is %s" (meta-log-federation--peer-label peer-id)
               (plist-get peer :status)))
    peer))

(provide 'meta-log-federation-compat)
;;; meta-log-federation-compat.el ends here
