;;; meta-log-federation-links.el --- canvasl:// and mqtt:// links  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; Two kinds of links, usable as Org links and through `browse-url':
;;
;;   canvasl://ORIGIN/NAME  opens that shared canvas
;;                          (`meta-log-federation-open-canvasl-url'); when
;;                          it is not here yet, asks ORIGIN for it through
;;                          sync and opens it when it arrives.
;;   mqtt://[USER@]HOST[:PORT]  (or mqtts://, ws://, wss://)
;;                          offers to start federation with that broker
;;                          (`meta-log-federation-open-mqtt-url'), after
;;                          asking.  A link never holds a password: with
;;                          a USER, the password comes from `auth-sources'
;;                          (see `meta-log-federation-auth-broker-url').
;;
;; A link never runs code and never writes a file: a canvasl:// link is
;; checked with the sync engine's own rules for share names (asked from
;; the module, as are the rules for broker URLs), and the file
;; it opens comes from the engine's list of shares, never from the link
;; (a file received from a peer must also lie in the sync directory).
;; docs/PROTOCOL_HANDLERS.md describes both links and how to register
;; them with the desktop.
;;
;; Loading this file installs the handlers
;; (`meta-log-federation-links-install'); `meta-log-federation-links-uninstall'
;; removes them.

;;; Code:

(require 'cl-lib)
(require 'subr-x)
(require 'url-util)
(require 'browse-url)
(require 'meta-log-federation-custom)
(require 'meta-log-federation-node)
(require 'meta-log-federation-compat)
(require 'meta-log-federation-sync)

(declare-function meta-log-federation--federation-peer-id "meta-log-federation-module")
(declare-function meta-log-federation--share-name-problem "meta-log-federation-module")
(declare-function meta-log-federation--share-url-parse "meta-log-federation-module")
(declare-function meta-log-federation--share-url "meta-log-federation-module")
(declare-function meta-log-federation--broker-url-parts "meta-log-federation-module")
(declare-function org-link-set-parameters "ol" (type &rest parameters))
(declare-function org-link-make-regexps "ol" ())
(defvar org-link-parameters)

(defcustom meta-log-federation-links-wait-time 600
  "Seconds a canvas asked for by a canvasl:// link is waited for.
When it arrives within that time, it is opened."
  :type 'number
  :group 'meta-log-federation)

;;;; Checking links
;;
;; The rules for share names, share URLs and broker URLs are the module's
;; (src/sync/share_id.rs, src/transport/url.rs): this file only adds what
;; is particular to links (a link never holds a password; a NAME with
;; %XX escapes must also be acceptable once decoded).

(defun meta-log-federation-links--refuse (url format-string &rest args)
  "Signal `meta-log-federation-error': URL is refused for FORMAT-STRING with ARGS."
  (signal 'meta-log-federation-error
          (list (format "Refused link %s: %s"
                        (let ((print-escape-newlines t)
                              (print-escape-control-characters t)
                              (print-escape-nonascii nil))
                          (prin1-to-string (if (stringp url) url (format "%S" url))))
                        (apply #'format-message format-string args)))))

(defun meta-log-federation-links--name-problem (name)
  "Return why NAME is not an acceptable share name, or nil if it is.
The sync engine's rules, asked from the module (see
`meta-log-federation--share-name-problem')."
  (meta-log-federation--share-name-problem name))

(defun meta-log-federation-links--unhex (name)
  "Return NAME with its %XX escapes decoded as UTF-8."
  (decode-coding-string (url-unhex-string name) 'utf-8 t))

(defmacro meta-log-federation-links--refusing (url &rest body)
  "Run BODY; a `meta-log-federation-error' it signals refuses the link URL."
  (declare (indent 1) (debug t))
  (let ((err (make-symbol "err")))
    `(condition-case ,err
         (progn ,@body)
       (meta-log-federation-error
        (meta-log-federation-links--refuse
         ,url "%s" (if (stringp (cadr ,err)) (cadr ,err) (error-message-string ,err)))))))

(defun meta-log-federation--parse-canvasl-url (url)
  "Check the share link URL, canvasl://ORIGIN/NAME; return (ORIGIN . NAME).
ORIGIN must be a peer id (64 lowercase hexadecimal characters) and NAME
a share name the sync engine accepts (see
`meta-log-federation--share-name-problem'); the scheme may be written
in any case.  A NAME with %XX escapes must also be acceptable once
decoded.  Signal `meta-log-federation-error' saying what is wrong
otherwise."
  (unless (stringp url)
    (meta-log-federation-links--refuse url "a link is a string"))
  (let* ((url (if (string-prefix-p "canvasl://" url t)
                  (concat "canvasl://" (substring url (length "canvasl://")))
                url))
         (id (meta-log-federation-links--refusing url
               (meta-log-federation--share-url-parse url)))
         (name (cdr id)))
    (when (string-search "%" name)
      (let ((problem (meta-log-federation-links--name-problem
                      (meta-log-federation-links--unhex name))))
        (when problem
          (meta-log-federation-links--refuse url "once its %%XX escapes are decoded, %s"
                                             problem))))
    id))

(defun meta-log-federation--parse-mqtt-url (url)
  "Check the broker link URL; return a plist.
URL is mqtt://[USER@]HOST[:PORT], or mqtts://, ws:// or wss:// (with a
path for the last two): any broker URL the module accepts (see
`meta-log-federation--broker-url-parts') that holds no password.  The
plist has :user (or nil), :host, :port (a number) and :url, the link
rebuilt from those parts (what federation is started with).  Signal
`meta-log-federation-error' saying what is wrong."
  (unless (stringp url)
    (meta-log-federation-links--refuse url "a link is a string"))
  (let* ((shown (meta-log-federation--redact-url url)) ; refusals never show a password
         (parts (meta-log-federation-links--refusing shown
                  (meta-log-federation--broker-url-parts url))))
    (when (plist-get parts :password-p)
      (meta-log-federation-links--refuse
       shown "a password in a link is refused: write mqtt://USER@HOST:PORT and keep the password in `auth-sources' (e.g. ~/.authinfo.gpg: machine HOST port PORT login USER password ...)"))
    (list :user (plist-get parts :user) :host (plist-get parts :host)
          :port (plist-get parts :port) :url (plist-get parts :url))))

;;;; Opening canvases

(defvar meta-log-federation-links--pending nil
  "Canvases asked for by a link and not arrived yet: alist (URL . DEADLINE).
DEADLINE is a `float-time' after which the canvas is no longer opened.")

(defun meta-log-federation-links--share-urls (id)
  "Return the share URLs that ID, (ORIGIN . NAME), may stand for.
The name as written, then, if it has %XX escapes, the name decoded."
  (let* ((origin (car id))
         (name (cdr id))
         (urls (list (meta-log-federation--share-url origin name))))
    (when (string-search "%" name)
      (cl-pushnew (meta-log-federation--share-url
                   origin (meta-log-federation-links--unhex name))
                  urls :test #'equal))
    (nreverse urls)))

(defun meta-log-federation-links--find-share (urls)
  "Return the plist of the first share known to the sync engine among URLS."
  (let ((shares (meta-log-federation-shared-canvasl-files 'brief)))
    (cl-some (lambda (url)
               (cl-find url shares :key (lambda (s) (plist-get s :url)) :test #'equal))
             urls)))

(defun meta-log-federation-links--in-sync-dir-p (file)
  "Return non-nil if FILE lies inside the sync directory."
  (let ((dir (meta-log-federation--sync-dir)))
    (and (stringp file)
         (file-in-directory-p (file-truename file) (file-truename dir)))))

(defun meta-log-federation-links--share-file (share)
  "Return the file of SHARE (a plist from the sync engine) that may be opened.
A share received from a peer must lie in the sync directory; signal
`meta-log-federation-error' otherwise."
  (let ((file (plist-get share :path)))
    (unless (or (plist-get share :local)
                (meta-log-federation-links--in-sync-dir-p file))
      (signal 'meta-log-federation-error
              (list (format "The file of %s, %s, is not in the sync directory %s: not opened"
                            (plist-get share :url) file (meta-log-federation--sync-dir)))))
    file))

(defun meta-log-federation-links--wait-for (url)
  "Open the share URL when it arrives.
It is waited for `meta-log-federation-links-wait-time' seconds."
  (setf (alist-get url meta-log-federation-links--pending nil nil #'equal)
        (+ (float-time) meta-log-federation-links-wait-time))
  (add-hook 'meta-log-federation-canvasl-updated-functions
            #'meta-log-federation-links--arrived))

(defun meta-log-federation-links--stop-waiting (&optional url)
  "Stop waiting for URL (if non-nil) and for canvases waited for too long."
  (let ((now (float-time)))
    (setq meta-log-federation-links--pending
          (cl-remove-if (lambda (p) (or (equal (car p) url) (< (cdr p) now)))
                        meta-log-federation-links--pending)))
  (unless meta-log-federation-links--pending
    (remove-hook 'meta-log-federation-canvasl-updated-functions
                 #'meta-log-federation-links--arrived)))

(defun meta-log-federation-links--arrived (file url _created)
  "Open FILE, the share URL just updated, if a link asked for it.
FILE is opened only if the engine lists URL with that very file and,
for a share received from a peer, the file is in the sync directory."
  (let ((entry (assoc url meta-log-federation-links--pending)))
    (if (not (and entry (>= (cdr entry) (float-time))))
        (meta-log-federation-links--stop-waiting)
      (meta-log-federation-links--stop-waiting url)
      (let* ((share (ignore-errors (meta-log-federation-links--find-share (list url))))
             (path (if share
                       (meta-log-federation-links--share-file share)
                     ;; Not listed (yet): only the engine's own file in the sync directory.
                     (and (meta-log-federation-links--in-sync-dir-p file) file))))
        (if (and path (file-exists-p path))
            (pop-to-buffer (find-file-noselect path))
          (meta-log-federation--log "%s arrived but its file %s was not opened" url file))))))

(defun meta-log-federation-links--forget-pending ()
  "Stop waiting for canvases (federation is stopping)."
  (setq meta-log-federation-links--pending nil)
  (remove-hook 'meta-log-federation-canvasl-updated-functions
               #'meta-log-federation-links--arrived))

(add-hook 'meta-log-federation-stopping-hook #'meta-log-federation-links--forget-pending)

(defun meta-log-federation-links--ask-for (id)
  "Ask the origin of ID, (ORIGIN . NAME), for that share; open it on arrival."
  (let* ((origin (car id))
         (url (meta-log-federation--share-url origin (cdr id))))
    (when (equal origin (meta-log-federation--federation-peer-id))
      (user-error "This peer has no active share named %s" (cdr id)))
    (meta-log-federation-links--wait-for url)
    (if (not (ignore-errors (meta-log-federation-peer origin)))
        (message "meta-log-federation: peer %s has not announced itself yet; %s opens if it arrives"
                 (meta-log-federation--short-id origin) (cdr id))
      (condition-case err
          (meta-log-federation-connect-to-peer origin)
        ((error quit)
         (meta-log-federation-links--stop-waiting url)
         (signal (car err) (cdr err))))
      (message "meta-log-federation: asked %s for %s; it opens when it arrives"
               (meta-log-federation--peer-label origin) (cdr id)))
    nil))

;;;###autoload
(defun meta-log-federation-open-canvasl-url (url)
  "Open the shared canvas of the link URL, canvasl://ORIGIN/NAME.
When the share is known here, visit its file and return the buffer.
Otherwise ask the peer ORIGIN for it through sync and open it when it
arrives (return nil).  The link is checked first (see
`meta-log-federation--parse-canvasl-url'); the file opened is the one
the sync engine lists for the share, and a file received from a peer
must lie in the sync directory.  Federation must be running."
  (interactive (list (read-string "Open canvasl:// link: "
                                  (let ((u (thing-at-point 'url t)))
                                    (and u (string-prefix-p "canvasl://" u) u)))))
  (let ((id (meta-log-federation--parse-canvasl-url url)))
    (unless (and (meta-log-federation-running-p) (meta-log-federation-sync-running-p))
      (user-error "Federation is not running: run `meta-log-federation-init' first, then open %s again"
                  url))
    (let ((share (meta-log-federation-links--find-share
                  (meta-log-federation-links--share-urls id))))
      (if share
          (find-file (meta-log-federation-links--share-file share))
        (meta-log-federation-links--ask-for id)))))

;;;; Starting federation from a broker link

;;;###autoload
(defun meta-log-federation-open-mqtt-url (url)
  "Offer to start federation with the broker of the link URL, mqtt://HOST[:PORT].
Broker links with mqtts://, ws:// and wss:// (MQTT over WebSockets) are
followed the same way.
The link may name a user, mqtt://USER@HOST[:PORT]: the password then
comes from `auth-sources' (an entry for HOST, PORT and USER; asked for,
and offered to be saved, when there is none).  Nothing happens without
confirmation; when federation already runs,
say so and change nothing.  Return what `meta-log-federation-init'
returns, or nil."
  (interactive (list (read-string "Broker link: " "mqtt://")))
  (let* ((broker (meta-log-federation--parse-mqtt-url url))
         (target (plist-get broker :url)))
    (cond
     ((meta-log-federation-running-p)
      (message "meta-log-federation: federation is already running; %s was not used" target)
      nil)
     ((y-or-n-p (format "Start federation with broker %s? " target))
      (meta-log-federation-init nil target))
     (t (message "meta-log-federation: federation not started")
        nil))))

;;;; Org and browse-url

(defun meta-log-federation-links-org-follow-canvasl (path &optional _arg)
  "Follow the Org link canvasl:PATH (PATH is //ORIGIN/NAME)."
  (meta-log-federation-open-canvasl-url (concat "canvasl:" path)))

(defun meta-log-federation-links-org-follow-mqtt (path &optional _arg)
  "Follow the Org link mqtt:PATH (PATH is //HOST:PORT)."
  (meta-log-federation-open-mqtt-url (concat "mqtt:" path)))

(defun meta-log-federation-links-browse-canvasl (url &rest _args)
  "Open the canvasl:// URL, for `browse-url-handlers'."
  (meta-log-federation-open-canvasl-url url))

(defun meta-log-federation-links-browse-mqtt (url &rest _args)
  "Offer to start federation with the mqtt:// URL, for `browse-url-handlers'."
  (meta-log-federation-open-mqtt-url url))

(defconst meta-log-federation-links--browse-handlers
  '(("\\`[cC][aA][nN][vV][aA][sS][lL]://" . meta-log-federation-links-browse-canvasl)
    ("\\`[mM][qQ][tT][tT]://" . meta-log-federation-links-browse-mqtt))
  "Entries added to `browse-url-handlers'.")

(defvar meta-log-federation-links--installed nil
  "Non-nil while the handlers are installed.")

(defun meta-log-federation-links--org-install ()
  "Define the canvasl and mqtt Org link types, if the handlers are installed."
  (when meta-log-federation-links--installed
    (org-link-set-parameters "canvasl" :follow #'meta-log-federation-links-org-follow-canvasl)
    (org-link-set-parameters "mqtt" :follow #'meta-log-federation-links-org-follow-mqtt)))

(defun meta-log-federation-links-install ()
  "Make canvasl:// and mqtt:// links work in Org and through `browse-url'."
  (interactive)
  (setq meta-log-federation-links--installed t)
  (dolist (entry meta-log-federation-links--browse-handlers)
    (add-to-list 'browse-url-handlers entry))
  (with-eval-after-load 'ol
    (meta-log-federation-links--org-install)))

(defun meta-log-federation-links-uninstall ()
  "Remove the canvasl:// and mqtt:// handlers from Org and `browse-url'."
  (interactive)
  (dolist (entry meta-log-federation-links--browse-handlers)
    (setq browse-url-handlers (delete entry browse-url-handlers)))
  (setq meta-log-federation-links--installed nil)
  (when (boundp 'org-link-parameters)
    (dolist (type '("canvasl" "mqtt"))
      (let ((follow (plist-get (cdr (assoc type org-link-parameters)) :follow)))
        (when (memq follow '(meta-log-federation-links-org-follow-canvasl
                             meta-log-federation-links-org-follow-mqtt))
          (setq org-link-parameters (assoc-delete-all type org-link-parameters)))))
    (when (fboundp 'org-link-make-regexps)
      (org-link-make-regexps))))

(meta-log-federation-links-install)

(provide 'meta-log-federation-links)
;;; meta-log-federation-links.el ends here
