;;; meta-log-federation-build.el --- Find, build and load the native module  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;; This file is not part of GNU Emacs.

;;; Commentary:

;; The engine of meta-log-federation is a dynamic module written in Rust,
;; `meta-log-federation-module.so', which `make' puts beside this file.
;; When it is missing, loading the package offers to build it (as vterm
;; does), or builds it without asking when
;; `meta-log-federation-always-compile-module' is non-nil, and otherwise
;; signals an error that names the command to run.  After loading, the
;; module's version is checked against the Elisp version.

;;; Code:

(require 'meta-log-federation-custom)
(require 'subr-x)

(defconst meta-log-federation-elisp-version "0.1.0"
  "Version of the Elisp half of meta-log-federation.
The native module must report the same version.")

(defcustom meta-log-federation-always-compile-module nil
  "If non-nil, build a missing native module without asking."
  :type 'boolean
  :group 'meta-log-federation)

(defcustom meta-log-federation-module-build-command "make module"
  "Shell command, run in the package's top directory, that builds the module."
  :type 'string
  :group 'meta-log-federation)

(defconst meta-log-federation--lisp-directory
  (file-name-directory (or load-file-name buffer-file-name default-directory))
  "Directory of the package's Elisp files, where the module is installed.")

(defun meta-log-federation--source-directory ()
  "Return the top directory of the source tree, holding the Makefile."
  (let ((top (file-name-directory (directory-file-name
                                   meta-log-federation--lisp-directory))))
    (if (file-exists-p (expand-file-name "Makefile" top))
        top
      meta-log-federation--lisp-directory)))

(defun meta-log-federation--module-file ()
  "Return the path where the native module is expected."
  (expand-file-name (concat "meta-log-federation-module" module-file-suffix)
                    meta-log-federation--lisp-directory))

(defconst meta-log-federation--build-report-interval 3
  "Seconds between two progress lines of a module build.")

(defconst meta-log-federation--cargo-progress-regexp
  "Building \\[[^]]*\\] \\([0-9]+\\)/\\([0-9]+\\)\\(?:: \\([^\r\n]*\\)\\)?"
  "Cargo's progress bar: steps done, steps in all, what is being built.")

(defun meta-log-federation--build-progress (text)
  "Return (DONE TOTAL CURRENT) from the last cargo progress bar in TEXT, or nil."
  (let ((start 0) found)
    (while (string-match meta-log-federation--cargo-progress-regexp text start)
      (setq found (list (string-to-number (match-string 1 text))
                        (string-to-number (match-string 2 text))
                        (string-trim (or (match-string 3 text) "")))
            start (match-end 0)))
    found))

(defun meta-log-federation--build-status (elapsed progress)
  "Return the progress line of a build after ELAPSED seconds.
PROGRESS is (DONE TOTAL CURRENT) from cargo, or nil before its first
progress bar."
  (format "meta-log-federation: building the native module, %d:%02d elapsed%s"
          (/ (truncate elapsed) 60) (% (truncate elapsed) 60)
          (pcase progress
            (`(,done ,total ,current)
             (format ", %d of %d steps done, %d left%s" done total (- total done)
                     (if (string-empty-p current) "" (format " (now: %s)" current))))
            (_ " (cargo is starting; a first build takes one to three minutes)"))))

(defun meta-log-federation--build-filter (process output)
  "Insert OUTPUT of the build PROCESS in its buffer, tracking cargo's progress.
Cargo redraws its progress bar with carriage returns.  The buffer shows
cargo's other lines as they come and, while a bar is the latest thing
cargo wrote, one status line in its place: the elapsed time and what is
left.  Text after the last line end is held back until it is complete,
so that a bar split across two reads is never misread."
  (when (buffer-live-p (process-buffer process))
    (with-current-buffer (process-buffer process)
      (let* ((text (concat (process-get process 'pending) output))
             (end (let ((i (length text)))
                    (while (and (> i 0) (not (memq (aref text (1- i)) '(?\r ?\n))))
                      (setq i (1- i)))
                    i))
             (inhibit-read-only t))
        (process-put process 'pending (substring text end))
        (save-excursion
          (goto-char (point-max))
          (dolist (line (split-string (substring text 0 end) "[\r\n]" t))
            ;; The status line (if any) always goes: a bar replaces it, text follows it.
            (when (process-get process 'bar-start)
              (delete-region (process-get process 'bar-start) (point-max))
              (process-put process 'bar-start nil))
            (let ((progress (meta-log-federation--build-progress line)))
              (if (not progress)
                  (insert line "\n")
                (process-put process 'progress progress)
                (process-put process 'bar-start (point))
                (insert (meta-log-federation--build-status
                         (- (float-time) (or (process-get process 'started) (float-time)))
                         progress))))))))))

(defun meta-log-federation-compile-module ()
  "Build the native module with cargo, showing progress.
Runs `meta-log-federation-module-build-command' in the source tree
and waits for it.  Cargo's output goes to the buffer
*meta-log-federation-build*; every few seconds the echo area (standard
error in batch Emacs) says how long the build has run and how many of
cargo's steps are left.  A first build takes one to three minutes on
two cores."
  (interactive)
  (let* ((default-directory (meta-log-federation--source-directory))
         (buffer (get-buffer-create "*meta-log-federation-build*"))
         (command meta-log-federation-module-build-command)
         ;; Cargo draws its progress bar (steps done and in all) only on a
         ;; terminal unless asked; a pipe is what Emacs gives it.
         (process-environment (append '("CARGO_TERM_PROGRESS_WHEN=always"
                                        "CARGO_TERM_PROGRESS_WIDTH=100")
                                      process-environment))
         (started (float-time))
         (reported started)
         status)
    (unless (executable-find "cargo")
      (signal 'meta-log-federation-module-missing
              (list "cargo is not installed: install Rust from https://rustup.rs, then run `make' in"
                    default-directory)))
    (with-current-buffer buffer
      (let ((inhibit-read-only t))
        (erase-buffer)
        (insert (format "Building the meta-log-federation module in %s:\n$ %s\n\n"
                        default-directory command))))
    (message "meta-log-federation: building the native module (%s in %s)..."
             command (abbreviate-file-name default-directory))
    (unless noninteractive
      (display-buffer buffer))
    (let ((proc (make-process :name "meta-log-federation-build" :buffer buffer
                              :command (list shell-file-name shell-command-switch command)
                              ;; A pipe: on a pty cargo would add colour codes.
                              :connection-type 'pipe
                              :filter #'meta-log-federation--build-filter
                              :sentinel #'ignore)))
      (process-put proc 'started started)
      (while (process-live-p proc)
        (accept-process-output proc 0.5)
        (when (>= (- (float-time) reported) meta-log-federation--build-report-interval)
          (setq reported (float-time))
          (message "%s" (meta-log-federation--build-status
                         (- reported started) (process-get proc 'progress))))
        (unless noninteractive (redisplay)))
      (setq status (process-exit-status proc)))
    (unless (and (eq status 0) (file-exists-p (meta-log-federation--module-file)))
      (error "Building the meta-log-federation module failed (exit %s); see buffer %s"
             status (buffer-name buffer)))
    (message "meta-log-federation: module built in %d s: %s"
             (round (- (float-time) started)) (meta-log-federation--module-file))))

(defun meta-log-federation--check-version ()
  "Signal an error if the loaded module and the Elisp differ in version."
  (let ((module-version (funcall (intern "meta-log-federation-version"))))
    (unless (equal module-version meta-log-federation-elisp-version)
      (signal 'meta-log-federation-error
              (list (format "Native module version %s does not match Elisp version %s: rebuild it with `make' in %s and restart Emacs"
                            module-version meta-log-federation-elisp-version
                            (meta-log-federation--source-directory)))))))

(defun meta-log-federation--ensure-module-file (file)
  "Make sure the module FILE exists: build it if allowed, else signal.
Building is allowed when `meta-log-federation-always-compile-module' is
non-nil or the user says yes; in batch Emacs nobody can be asked."
  (unless module-file-suffix
    (signal 'meta-log-federation-module-missing
            (list "This Emacs was built without dynamic module support")))
  (unless (file-exists-p file)
    (if (or meta-log-federation-always-compile-module
            (and (not noninteractive)
                 (y-or-n-p "The meta-log-federation native module is missing.  Build it now (needs cargo)? ")))
        (meta-log-federation-compile-module)
      (signal 'meta-log-federation-module-missing
              (list (format "%s not found: build it with `make' in %s (needs cargo), or set `meta-log-federation-always-compile-module'"
                            file (meta-log-federation--source-directory)))))))

(defun meta-log-federation-load-module ()
  "Load the native module, building it first if it is missing and allowed."
  (unless (featurep 'meta-log-federation-module)
    (let ((file (meta-log-federation--module-file)))
      (meta-log-federation--ensure-module-file file)
      (require 'meta-log-federation-module file)))
  (meta-log-federation--check-version))

(provide 'meta-log-federation-build)
;;; meta-log-federation-build.el ends here
