;;; demo-peer.el --- One peer of `make demo'  -*- lexical-binding: t; -*-

;;; Commentary:

;; emacs --batch -Q -L lisp -l examples/demo-peer.el ROLE WORKDIR
;; ROLE is alice or bob.  Both start federation on the broker named by
;; META_LOG_MQTT_BROKER (the embedded one by default), with a fresh
;; identity and files under WORKDIR/ROLE.  Alice shares a copy of
;; examples/demo.canvasl; Bob receives it.  Each then edits a different
;; entry, as a user would (in a buffer, then save), and waits until its
;; file holds both edits.  Everything that happens is printed.

;;; Code:

(require 'meta-log-federation)
(require 'json)

(defvar demo-role (pop command-line-args-left))
(defvar demo-home (file-name-as-directory
                   (expand-file-name demo-role (pop command-line-args-left))))
(defvar demo-file nil "The canvas this peer edits.")
(defvar demo-other-online nil)

(setq meta-log-federation-verbose nil
      meta-log-federation-display-name demo-role
      meta-log-federation-identity-file (expand-file-name "identity.org" demo-home)
      meta-log-federation-trust-file (expand-file-name "trust.json" demo-home)
      meta-log-federation-sync-directory (expand-file-name "sync/" demo-home)
      meta-log-federation-sync-state-directory (expand-file-name "sync-state/" demo-home))

(defun demo-say (format-string &rest args)
  "Print FORMAT-STRING with ARGS, prefixed by the peer's name."
  ;; stderr is unbuffered, so both peers' lines interleave as things happen.
  (message "[%-5s] %s" demo-role (apply #'format format-string args)))

(add-hook 'meta-log-federation-peer-online-functions
          (lambda (id name)
            (setq demo-other-online t)
            (demo-say "peer %s (%s...) is online: its presence was signed, verified and trusted on first use"
                      name (substring id 0 12))))
(add-hook 'meta-log-federation-peer-offline-functions
          (lambda (id reason) (demo-say "peer %s... went offline (%s)" (substring id 0 12) reason)))
(add-hook 'meta-log-federation-canvasl-updated-functions
          (lambda (file url created)
            (unless demo-file (setq demo-file file))
            (demo-say "%s %s from the federation -> %s"
                      (if created "received the shared canvas" "merged a remote change into")
                      url (abbreviate-file-name file))))

(defun demo-edit (id field value)
  "Set FIELD of entry ID to VALUE in the canvas, in its buffer, and save."
  (with-current-buffer (find-file-noselect demo-file)
    (goto-char (point-min))
    (re-search-forward (format "\"id\":\"%s\"" id))
    (let ((entry (json-parse-string (buffer-substring (line-beginning-position)
                                                      (line-end-position))
                                    :object-type 'alist)))
      (setf (alist-get (intern field) entry) value)
      (delete-region (line-beginning-position) (line-end-position))
      (insert (json-serialize entry)))
    (save-buffer)
    (demo-say "edited %s.%s = %S and saved: only that change goes out, signed" id field value)))

(defun demo-has (text)
  "Return non-nil when the canvas file contains TEXT."
  (and demo-file (file-exists-p demo-file)
       (with-temp-buffer (insert-file-contents demo-file)
                         (string-search text (buffer-string)))))

(make-directory demo-home t)
(meta-log-federation-init (expand-file-name "blackboard.org" demo-home))
(unless (meta-log-federation-wait-until #'meta-log-federation-connected-p 20)
  (demo-say "could not reach the broker %s" meta-log-federation-mqtt-broker)
  (kill-emacs 1))
(demo-say "online as %s, peer id %s..." demo-role
          (substring (plist-get (meta-log-federation-get-local-peer-identity) :peer-id) 0 12))
(unless (meta-log-federation-wait-until (lambda () demo-other-online) 30)
  (demo-say "the other peer never came")
  (kill-emacs 1))

(pcase demo-role
  ("alice"
   (setq demo-file (expand-file-name "demo.canvasl" demo-home))
   (copy-file (expand-file-name "examples/demo.canvasl") demo-file t)
   (demo-say "sharing %s as %s" (abbreviate-file-name demo-file)
             (meta-log-federation-share-canvasl demo-file))
   (meta-log-federation-wait-until (lambda () nil) 0.5)
   (demo-edit "idea" "text" "An idea worth sharing, refined by alice"))
  (_
   (unless (meta-log-federation-wait-until (lambda () demo-file) 30)
     (demo-say "the canvas never arrived")
     (kill-emacs 1))
   (demo-edit "risk" "color" "4")))

(if (meta-log-federation-wait-until
     (lambda () (and (demo-has "refined by alice") (demo-has "\"color\":\"4\""))) 30)
    (demo-say "converged: the canvas holds both peers' edits")
  (demo-say "did not converge")
  (kill-emacs 1))
;; Stay a moment so the other peer's last messages are answered.
(meta-log-federation-wait-until (lambda () nil) 1.5)
(meta-log-federation-shutdown)
(kill-emacs 0)

;;; demo-peer.el ends here
