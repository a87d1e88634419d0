;;; init.el --- Emacs init of the meta-log-federation container  -*- lexical-binding: t; -*-

;;; Commentary:

;; Installed as /root/.emacs.d/init.el by the Dockerfile and read by the
;; container's main process, `emacs --fg-daemon'.  The package itself
;; reads the image's environment (see
;; `meta-log-federation-environment-options'): META_LOG_MQTT_BROKER
;; (empty: its embedded broker on this machine),
;; META_LOG_FEDERATION_BLACKBOARD, META_LOG_SYNC_DIRECTORY,
;; META_LOG_SYNC_STATE_DIRECTORY and META_LOG_IDENTITY_FILE (trust.json
;; is kept beside the identity), all in the volumes; and
;; META_LOG_ENABLE_FEDERATION=1 starts federation in this daemon, never
;; in a batch Emacs run in the same container.  This file only puts the
;; package on the load path and says on stderr (`docker logs') what
;; happened.  Health check: docker/healthcheck asks this daemon
;; (meta-log-federation-connected-p) through emacsclient.

;;; Code:

(add-to-list 'load-path (expand-file-name "meta-log" user-emacs-directory))

(defvar meta-log-federation-identity-file)

(defun meta-log-docker--say (format-string &rest args)
  "Print FORMAT-STRING with ARGS on stderr, which `docker logs' shows."
  (princ (concat "meta-log: " (apply #'format format-string args) "\n")
         #'external-debugging-output))

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
