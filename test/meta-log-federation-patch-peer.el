;;; meta-log-federation-patch-peer.el --- Buffer commands for a scripted test peer  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; Loaded by a test peer before meta-log-federation-test-peer.el: peer
;; messages then steer a buffer visiting a synced file, as a person
;; would, and the peer reports what the buffer shows ("PEER: " lines):
;;   "pvisit:URL|LINE|COLUMN"  visit the file, point at LINE (1-based), COLUMN
;;                              -> PVISITED
;;   "ptype:URL|LINE|TEXT"     insert TEXT at the start of LINE, unsaved,
;;                              point kept -> PTYPED
;;   "psave:URL"               save the buffer -> PSAVED
;;   "pstate:URL|NEEDLE"       -> PSTATE MODIFIED HAS-NEEDLE LINES COLUMN
;;                              PATCHED REVERTED CURRENT-LINE-TEXT
;; (LINES: the engine's line count of the share.)

;;; Code:

(require 'cl-lib)

(defvar meta-log-federation-patch-counts)
(declare-function meta-log-federation-shared-canvasl-files "meta-log-federation-sync")
(declare-function test-peer-say "meta-log-federation-test-peer")

(defun test-patch-peer-share (url &optional details)
  "Return the share plist of URL; with DETAILS, with its sizes."
  (cl-find url (meta-log-federation-shared-canvasl-files (if details t 'brief))
           :key (lambda (s) (plist-get s :url)) :test #'equal))

(defun test-patch-peer-buffer (url)
  "Return the buffer visiting the file of URL (visiting it if needed)."
  (let ((buffer (find-file-noselect (plist-get (test-patch-peer-share url) :path))))
    (unless (eq (window-buffer (selected-window)) buffer)
      (set-window-buffer (selected-window) buffer))
    (set-buffer buffer)
    buffer))

(defun test-patch-peer-command (_from text)
  "Carry out the buffer command TEXT, if it is one."
  (pcase (and (string-match "\\`\\(p[a-z]+\\):\\(.*\\)\\'" text)
              (cons (match-string 1 text) (split-string (match-string 2 text) "|")))
    (`("pvisit" ,url ,line ,column)
     (with-current-buffer (test-patch-peer-buffer url)
       (goto-char (point-min))
       (forward-line (1- (string-to-number line)))
       (forward-char (string-to-number column))
       (set-window-point (selected-window) (point))
       (test-peer-say "PVISITED")))
    (`("ptype" ,url ,line ,typed)
     (with-current-buffer (test-patch-peer-buffer url)
       (save-excursion
         (goto-char (point-min))
         (forward-line (1- (string-to-number line)))
         (insert typed "\n"))
       (test-peer-say "PTYPED")))
    (`("psave" ,url)
     (with-current-buffer (test-patch-peer-buffer url)
       (save-buffer)
       (test-peer-say "PSAVED")))
    (`("pstate" ,url ,needle)
     (with-current-buffer (test-patch-peer-buffer url)
       (test-peer-say "PSTATE %s %s %d %d %d %d %s"
                      (if (buffer-modified-p) "modified" "unmodified")
                      (if (save-excursion (goto-char (point-min)) (search-forward needle nil t))
                          "has" "lacks")
                      (plist-get (test-patch-peer-share url t) :lines)
                      (current-column)
                      (nth 0 meta-log-federation-patch-counts)
                      (nth 1 meta-log-federation-patch-counts)
                      (buffer-substring-no-properties (line-beginning-position)
                                                      (line-end-position)))))))

(add-hook 'meta-log-federation-peer-message-functions #'test-patch-peer-command)

(provide 'meta-log-federation-patch-peer)
;;; meta-log-federation-patch-peer.el ends here
