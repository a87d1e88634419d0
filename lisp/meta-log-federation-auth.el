;;; meta-log-federation-auth.el --- Broker passwords from auth-source  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; A broker that needs a password is named with its user and without
;; the password: mqtt://alice@broker.example:1883 (as a link, as the
;; argument of `meta-log-federation-init' or in
;; `meta-log-federation-mqtt-broker-url').  The password is looked up in
;; `auth-sources' (~/.authinfo.gpg, the Secrets API, ...) by host, port
;; and user, as with any other Emacs login:
;;
;;   machine broker.example port 1883 login alice password SECRET
;;
;; When no entry exists and Emacs is interactive, auth-source asks for
;; the password, and offers to save it once the broker has accepted it.
;; A broker that refuses the user name or password is not retried (the
;; MQTT client stops at once): a warning says which entry to fix, and
;; the cached entry is forgotten so the next start reads it anew.

;;; Code:

(require 'auth-source)
(require 'meta-log-federation-custom)
(require 'meta-log-federation-mqtt)

(declare-function meta-log-federation--broker-url-parts "meta-log-federation-module")
(declare-function meta-log-federation--broker-url-with-login "meta-log-federation-module")

(defcustom meta-log-federation-use-auth-source t
  "If non-nil, broker URLs with a user and no password take it from `auth-sources'.
The entry is found by host, port and user; see Info node `(auth) Help
for users'."
  :type 'boolean
  :group 'meta-log-federation)

(defvar meta-log-federation-auth--login nil
  "The auth-source login in use, or nil: a plist.
Keys :host, :port, :user and :save, the function that saves a password
just typed (nil once saved, or when it came from a file).")

(defun meta-log-federation-auth--secret (entry)
  "Return the password of the auth-source ENTRY, a string, or nil."
  (let ((secret (plist-get entry :secret)))
    (if (functionp secret) (funcall secret) secret)))

(defun meta-log-federation-auth-broker-url (url)
  "Return URL with the broker password from `auth-sources', when it needs one.
URL needs one when it names a user and no password
\(mqtt://USER@HOST[:PORT]).  The entry is searched by host, port (the
URL's, or the scheme's default) and user.  In an interactive Emacs,
when there is no entry, auth-source asks for the password and offers
to save it after the broker accepted it.  Return URL unchanged when it
needs no password, when `meta-log-federation-use-auth-source' is nil,
or when no password was found (the broker then says whether it needs
one)."
  (setq meta-log-federation-auth--login nil)
  (let* ((parts (meta-log-federation--broker-url-parts url))
         (user (plist-get parts :user)))
    (if (or (not meta-log-federation-use-auth-source)
            (null user)
            (plist-get parts :password-p))
        url
      (let* ((host (plist-get parts :host))
             (port (plist-get parts :port))
             (entry (car (auth-source-search
                          :host host :port (number-to-string port) :user user
                          :require '(:secret) :max 1
                          :create (not noninteractive))))
             (password (and entry (meta-log-federation-auth--secret entry))))
        (if (not password)
            (progn
              (meta-log-federation--log
               "no password for %s at %s:%d in auth-sources; connecting without one"
               user host port)
              url)
          (setq meta-log-federation-auth--login
                (list :host host :port port :user user
                      :save (plist-get entry :save-function)))
          (meta-log-federation--broker-url-with-login url user password))))))

(defun meta-log-federation-auth--connected ()
  "The broker accepted the login: offer to save a password just typed."
  (let ((save (plist-get meta-log-federation-auth--login :save)))
    (when save
      (setq meta-log-federation-auth--login
            (plist-put meta-log-federation-auth--login :save nil))
      (meta-log-federation--safe-funcall save "auth-source save"))))

(defun meta-log-federation-auth--refused (context message)
  "Say what to fix when the broker refused the login (CONTEXT \"auth\", MESSAGE)."
  (when (equal context "auth")
    (let ((login meta-log-federation-auth--login))
      (setq meta-log-federation-auth--login nil)
      (when login
        ;; Never save, nor keep cached, a password the broker refused.
        (auth-source-forget+ :host (plist-get login :host)
                             :port (number-to-string (plist-get login :port))))
      (display-warning
       'meta-log-federation
       (if login
           (format "The broker %s:%d refused user %s with the password from auth-sources (%s).  Nothing is retried.  Fix that entry (machine %s port %d login %s password ...) or the broker's account, then run M-x meta-log-federation-shutdown and M-x meta-log-federation-init.  (%s)"
                   (plist-get login :host) (plist-get login :port) (plist-get login :user)
                   (mapconcat (lambda (s) (format "%s" s)) auth-sources ", ")
                   (plist-get login :host) (plist-get login :port) (plist-get login :user)
                   message)
         (format "%s  Then run M-x meta-log-federation-shutdown and M-x meta-log-federation-init."
                 message))
       :error))))

(add-hook 'meta-log-federation-mqtt-connected-hook #'meta-log-federation-auth--connected)
(add-hook 'meta-log-federation-error-functions #'meta-log-federation-auth--refused)

(provide 'meta-log-federation-auth)
;;; meta-log-federation-auth.el ends here
