;;; meta-log-federation.el --- Federated Emacs peers over MQTT with signed events  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; Author: meta-log-federation contributors
;; Version: 0.1.0
;; Package-Requires: ((emacs "28.1"))
;; Keywords: comm, tools
;; URL: https://github.com/meta-log/meta-log-federation

;; This file is not part of GNU Emacs.

;;; Commentary:

;; meta-log-federation lets several Emacs instances federate through an
;; MQTT broker.  Its engine is a native module written in Rust
;; (`meta-log-federation-module'), which `make' builds; loading this
;; package offers to build it when it is missing.
;;
;; Entry points:
;;   `meta-log-federation-mqtt-connect', `-mqtt-publish', `-mqtt-subscribe',
;;   `-mqtt-unsubscribe', `-mqtt-disconnect', `-mqtt-connected-p',
;;   `meta-log-federation-wait-until', `meta-log-federation-shutdown'.
;;   Federation: `meta-log-federation-init', `-send-peer-message',
;;   `-discover-peers', `-peers', `-list-peers', `-trust-peer',
;;   `-block-peer', `-counters'.  Set META_LOG_ENABLE_FEDERATION=1 to
;;   start federation when the package loads in a daemon or an
;;   interactive Emacs (never in batch Emacs);
;;   `meta-log-federation-environment-options' lists the other
;;   META_LOG_* variables.

;;; Code:

(require 'meta-log-federation-custom)
(require 'meta-log-federation-build)
(meta-log-federation-load-module)
(require 'meta-log-federation-events)
(require 'meta-log-federation-mqtt)
(require 'meta-log-federation-identity)
(require 'meta-log-federation-canvasl)
(require 'meta-log-federation-node)
(require 'meta-log-federation-blackboard)
(require 'meta-log-federation-peer-list)
(require 'meta-log-federation-chat)
(require 'meta-log-federation-chat-history)
(require 'meta-log-federation-inbox)
(require 'meta-log-federation-compat)
(require 'meta-log-federation-sync)
(require 'meta-log-federation-blackboard-share)
(require 'meta-log-federation-members)
(require 'meta-log-federation-versions)
(require 'meta-log-federation-links)
(require 'meta-log-federation-direct)

;; The commands the guides list, autoloaded from this file (which loads
;; the module and every part), so `M-x' finds them before anything is
;; loaded.  The broker can be stopped without the module or federation:
;; its command loads only the broker's file, also after a plain `require'.
;;;###autoload
(dolist (command '(meta-log-federation-init meta-log-federation-shutdown
                   meta-log-federation-stats meta-log-federation-list-peers
                   meta-log-federation-discover-peers meta-log-federation-send-peer-message
                   meta-log-federation-trust-peer meta-log-federation-untrust-peer
                   meta-log-federation-block-peer meta-log-federation-counters
                   meta-log-federation-share-canvasl meta-log-federation-unshare-canvasl
                   meta-log-federation-shared-canvasl-files meta-log-federation-canvasl-conflicts
                   meta-log-federation-canvasl-catch-up meta-log-federation-sync-refusals
                   meta-log-federation-sync-blackboard meta-log-federation-identity-new
                   meta-log-federation-identity-show meta-log-federation-links-install
                   meta-log-federation-links-uninstall meta-log-federation-chat
                   meta-log-federation-inbox meta-log-federation-outbox
                   meta-log-federation-sync-status meta-log-federation-share-members
                   meta-log-federation-share-add-member meta-log-federation-share-remove-member))
  (autoload command "meta-log-federation" nil t))
;;;###autoload
(dolist (command '(meta-log-federation-share-blackboard meta-log-federation-open-blackboard))
  (autoload command "meta-log-federation" nil t))
;;;###autoload
(autoload 'meta-log-federation-embedded-broker-stop "meta-log-federation-broker" nil t)

(declare-function meta-log-federation--shutdown-blocking "meta-log-federation-module")
(declare-function meta-log-federation--stats "meta-log-federation-module")

(defun meta-log-federation-shutdown ()
  "Disconnect and stop all background work of meta-log-federation.
When federation runs, announce this peer's departure first.
Unlike `meta-log-federation-mqtt-disconnect' this waits (a bounded
time) until the connection is closed and the runtime's threads are
gone, then runs the pending hooks.  Also run from `kill-emacs-hook'."
  (interactive)
  (meta-log-federation--stop-node "shutdown")
  (let ((had (meta-log-federation--shutdown-blocking)))
    (meta-log-federation--forget-subscriptions)
    (meta-log-federation-dispatch-pending)
    (meta-log-federation--stop-wakeup)
    (when (called-interactively-p 'interactive)
      (message "meta-log-federation: %s" (if had "shut down" "nothing was running")))
    had))

(defun meta-log-federation-stats ()
  "Return the module's counters as a plist; show them when called interactively."
  (interactive)
  (let ((stats (meta-log-federation--stats)))
    (when (called-interactively-p 'interactive)
      (message "meta-log-federation: %S" stats))
    stats))

(defun meta-log-federation--kill-emacs ()
  "Stop the runtime before Emacs exits, so the broker sees a clean goodbye."
  (when (featurep 'meta-log-federation-module)
    (ignore-errors (meta-log-federation--stop-node "exit"))
    (ignore-errors (meta-log-federation--shutdown-blocking))))

(add-hook 'kill-emacs-hook #'meta-log-federation--kill-emacs)

(meta-log-federation-apply-environment)

(defun meta-log-federation--start-from-environment ()
  "Start federation if META_LOG_ENABLE_FEDERATION=1, except in batch Emacs.
The Docker image's daemon turns federation on this way.  A batch Emacs
run in the same environment (a check, a script) must not start a
second peer under the same name: a script that wants federation calls
`meta-log-federation-init' itself."
  (when (equal (getenv "META_LOG_ENABLE_FEDERATION") "1")
    (if (and noninteractive (not (daemonp)))
        (meta-log-federation--log
         "META_LOG_ENABLE_FEDERATION=1 does not start federation in batch Emacs; call (meta-log-federation-init)")
      (condition-case err
          (meta-log-federation-init)
        (error (display-warning 'meta-log-federation
                                (format "META_LOG_ENABLE_FEDERATION=1 but federation did not start: %s"
                                        (error-message-string err))
                                :error))))))

(meta-log-federation--start-from-environment)

(provide 'meta-log-federation)
;;; meta-log-federation.el ends here
