;;; meta-log-federation-canvasl.el --- CanvasL files from Elisp  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; CanvasL files are JSON Lines canvases with optional `@directive' lines.
;; Real files are messy: ids repeat, lines may be Org or Markdown text,
;; directives come in three forms.  The native parser keeps every line
;; and reports oddities as warnings; this file exposes it to Elisp.

;;; Code:

(require 'meta-log-federation-custom)

(declare-function meta-log-federation--canvasl-parse "meta-log-federation-module")

(defun meta-log-federation-canvasl-parse (file)
  "Parse the CanvasL file FILE into a plist of directives, entries, warnings.
:directives is a list of (NAME . VALUE) in file order.
:entries is a list of plists (:line N :id ID :occurrence K :type TYPE
:json TEXT); ids repeat in real files, so (ID . K) names one entry.
:warnings is a list of (LINE KIND MESSAGE), KIND a symbol such as
`duplicate-id' or `non-json-line'; such lines are kept, never dropped.
:bom and :crlf say whether the file has a byte-order mark or CRLF
line endings.  A file that is not UTF-8 signals
`meta-log-federation-error'."
  (meta-log-federation--canvasl-parse (expand-file-name file)))

(defun meta-log-federation-canvasl-entry-fields (entry)
  "Return the fields of ENTRY (from `meta-log-federation-canvasl-parse').
The result is an alist of (SYMBOL . VALUE) in the entry's key order."
  (json-parse-string (plist-get entry :json) :object-type 'alist))

(defun meta-log-federation-canvasl-describe (file)
  "Show a summary of the CanvasL file FILE: entries, directives, warnings."
  (interactive "fCanvasL file: ")
  (let* ((parsed (meta-log-federation-canvasl-parse file))
         (warnings (plist-get parsed :warnings))
         (summary (format "%s: %d entries, %d directives, %d warnings"
                          (file-name-nondirectory file)
                          (length (plist-get parsed :entries))
                          (length (plist-get parsed :directives))
                          (length warnings))))
    (message "%s" summary)
    summary))

(provide 'meta-log-federation-canvasl)
;;; meta-log-federation-canvasl.el ends here
