;;; init.el --- Emacs init of the meta-log-federation container  -*- lexical-binding: t; -*-

;;; Commentary:

;; Installed as /root/.emacs.d/init.el by the Dockerfile and read by the
;; container's main process, `emacs --fg-daemon'.  Loading the package
;; starts federation when META_LOG_ENABLE_FEDERATION=1; the package reads
;; META_LOG_MQTT_BROKER (empty: its embedded broker on this machine),
;; META_LOG_FEDERATION_BLACKBOARD and META_LOG_SYNC_DIRECTORY itself.
;; This file only moves the rest of the peer's state out of the package
;; directory (~/.emacs.d/meta-log, the package's default place for it)
;; into the volumes, as the Dockerfile's environment says:
;;   META_LOG_IDENTITY_FILE          identity (created on first start);
;;                                   trust.json is kept beside it
;;   META_LOG_SYNC_STATE_DIRECTORY   merge history of the shared files
;; Health check: docker/healthcheck asks this daemon
;; (meta-log-federation-connected-p) through emacsclient.

;;; Code:

(add-to-list 'load-path (expand-file-name "meta-log" user-emacs-directory))

(defvar meta-log-federation-identity-file)
(defvar meta-log-federation-trust-file)
(defvar meta-log-federation-sync-state-directory)

(defun meta-log-docker--env (name)
  "Return environment variable NAME, or nil when it is unset or empty."
  (let ((value (getenv name)))
    (and value (not (equal value "")) value)))

(defun meta-log-docker--say (format-string &rest args)
  "Print FORMAT-STRING with ARGS on stderr, which `docker logs' shows."
  (princ (concat "meta-log: " (apply #'format format-string args) "\n")
         #'external-debugging-output))

;; Set before the package loads: its defcustoms keep values set earlier.
(let ((identity (meta-log-docker--env "META_LOG_IDENTITY_FILE"))
      (sync-state (meta-log-docker--env "META_LOG_SYNC_STATE_DIRECTORY")))
  (when identity
    (setq meta-log-federation-identity-file identity
          meta-log-federation-trust-file
          (expand-file-name "trust.json" (file-name-directory identity))))
  (when sync-state
    (setq meta-log-federation-sync-state-directory (file-name-as-directory sync-state))))

(condition-case err
    (progn
      (require 'meta-log-federation)
      (meta-log-docker--say
       "%s"
       (cond ((not (equal (getenv "META_LOG_ENABLE_FEDERATION") "1"))
              "federation off (set META_LOG_ENABLE_FEDERATION=1 to turn it on)")
             ((and (fboundp 'meta-log-federation-running-p)
                   (funcall 'meta-log-federation-running-p))
              (format "federation on, identity %s" meta-log-federation-identity-file))
             (t "federation did not start (see the warning above)"))))
  ;; The daemon stays up, so the health check can report what is wrong.
  (error (meta-log-docker--say "the package did not load: %s" (error-message-string err))))

;;; init.el ends here
