;;; meta-log-federation-custom.el --- Customization group of meta-log-federation  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; The one customize group that every option of the package belongs to,
;; and the error symbols that exist before the native module is loaded.

;;; Code:

(defgroup meta-log-federation nil
  "Federated Emacs peers: signed events over MQTT and merged CanvasL files."
  :group 'comm
  :prefix "meta-log-federation-"
  :link '(url-link :tag "README" "https://github.com/meta-log/meta-log-federation"))

(defcustom meta-log-federation-verbose t
  "If non-nil, report connection changes and background errors in the echo area."
  :type 'boolean
  :group 'meta-log-federation)

(defun meta-log-federation--log (format-string &rest args)
  "Show FORMAT-STRING with ARGS as a message when `meta-log-federation-verbose'."
  (when meta-log-federation-verbose
    (apply #'message (concat "meta-log-federation: " format-string) args)))

;; The native module defines the full hierarchy again when it loads; these
;; two must exist before, to report a missing or mismatched module.
(define-error 'meta-log-federation-error "meta-log-federation error")
(define-error 'meta-log-federation-module-missing
  "The meta-log-federation native module is missing"
  'meta-log-federation-error)

(provide 'meta-log-federation-custom)
;;; meta-log-federation-custom.el ends here
