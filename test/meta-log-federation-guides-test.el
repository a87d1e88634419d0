;;; meta-log-federation-guides-test.el --- The guides' commands and snippets work as written  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; The guides (README.md, docs/*.md, examples/PEER-SYNC-GUIDE.md) are
;; read as a new user reads them:
;;
;; - every command they list (each `M-x meta-log-...', and the first
;;   column of FEDERATION_GUIDE's "Everyday commands" table) must be an
;;   interactive command, autoloaded (from the autoloads file Emacs
;;   generates from the cookies) and defined after a plain `require';
;; - every ```elisp block runs, in order, in a fresh batch Emacs with a
;;   scratch HOME and the run's private broker, and must not signal.
;;
;; An HTML comment line right above a block steers it (it does not show
;; when the guide is rendered):
;;
;;   <!-- guide-test: skip REASON -->       not runnable here; REASON says why
;;   <!-- guide-test: federation -->        start federation first
;;   <!-- guide-test: broker HOST:PORT -->  that broker address stands for the private broker
;;   <!-- guide-test: setup FORM -->        evaluate FORM first (files the block expects)
;;
;; The walkthroughs themselves (several Emacs, typed keys) stay manual.

;;; Code:

(require 'cl-lib)
(require 'ert)
(require 'subr-x)

(defconst meta-log-federation-guides-root
  (expand-file-name ".." (file-name-directory (or load-file-name buffer-file-name)))
  "Top of the clone.")

(defun meta-log-federation-guides-files ()
  "Return the guides' files."
  (let ((root meta-log-federation-guides-root))
    (append (list (expand-file-name "README.md" root))
            (directory-files (expand-file-name "docs" root) t "\\.md\\'")
            (list (expand-file-name "examples/PEER-SYNC-GUIDE.md" root)))))

(defun meta-log-federation-guides--text (file)
  "Return the text of FILE."
  (with-temp-buffer
    (insert-file-contents file)
    (buffer-string)))

;;;; Listed commands

(defun meta-log-federation-guides--table-commands (text)
  "Return the commands of the \"Everyday commands\" table in TEXT.
The first column lists them in backquotes; `-NAME' abbreviates
`meta-log-federation-NAME'."
  (when (string-match "^## Everyday commands\n+" text)
    (let ((lines (split-string (substring text (match-end 0)) "\n"))
          (commands nil))
      (while (and lines (string-prefix-p "|" (car lines)))
        (let ((line (pop lines)))
          (when (string-match "\\`|\\([^|]*\\)|" line)
            (let ((cell (match-string 1 line))
                  (pos 0))
              (while (string-match "`\\(-?[a-z][a-z0-9-]*\\)`" cell pos)
                (let ((name (match-string 1 cell)))
                  (push (if (string-prefix-p "-" name)
                            (concat "meta-log-federation" name)
                          name)
                        commands))
                (setq pos (match-end 0)))))))
      commands)))

(defun meta-log-federation-guides-listed-commands ()
  "Return the project's commands the guides list, as symbols, sorted."
  (let ((names nil))
    (dolist (file (meta-log-federation-guides-files))
      (let ((text (meta-log-federation-guides--text file))
            (pos 0))
        (while (string-match "M-x \\(meta-log-[a-z0-9-]+[a-z0-9]\\)" text pos)
          (push (match-string 1 text) names)
          (setq pos (match-end 0)))
        (setq names (append (meta-log-federation-guides--table-commands text) names))))
    (mapcar #'intern (sort (delete-dups names) #'string<))))

(defun meta-log-federation-guides--emacs (env &rest forms)
  "Run batch Emacs with ENV (extra \"VAR=VALUE\" strings) and FORMS.
Return (EXIT-CODE . OUTPUT)."
  (let ((process-environment (append env process-environment)))
    (with-temp-buffer
      (let ((code (apply #'call-process
                         (expand-file-name invocation-name invocation-directory)
                         nil t nil
                         "--batch" "-Q" "-L"
                         (expand-file-name "lisp" meta-log-federation-guides-root)
                         (cl-loop for f in forms append (list "--eval" (prin1-to-string f))))))
        (cons code (buffer-string))))))

(ert-deftest guides::the-listed-commands-are-found-by-the-parser ()
  ;; The parser must see the commands the issue was about, or the
  ;; checks below would pass on nothing.
  (let ((commands (meta-log-federation-guides-listed-commands)))
    (dolist (c '(meta-log-federation-sync-refusals meta-log-federation-embedded-broker-stop
                 meta-log-federation-canvasl-catch-up meta-log-federation-untrust-peer
                 meta-log-peer-sync-demo-init meta-log-federation-list-peers))
      (should (memq c commands)))
    (should (> (length commands) 20))))

(ert-deftest guides::every-listed-command-is-an-autoloaded-command ()
  (let* ((commands (meta-log-federation-guides-listed-commands))
         (copy (make-temp-file "guides-autoloads-" t))
         (home (make-temp-file "guides-home-" t))
         (loaddefs (expand-file-name "meta-log-federation-autoloads.el" copy)))
    (unwind-protect
        (progn
          ;; Generate the autoloads file as package.el would, from a copy of
          ;; the sources, so the clone stays untouched.
          (dolist (f (directory-files (expand-file-name "lisp" meta-log-federation-guides-root)
                                      t "\\.el\\'"))
            (copy-file f (file-name-as-directory copy)))
          (let ((r (meta-log-federation-guides--emacs
                    nil `(progn (require 'autoload)
                                (make-directory-autoloads ,copy ,loaddefs)))))
            (should (zerop (car r))))
          ;; Before anything is loaded: each is an autoloaded command; the
          ;; broker can be stopped before federation ever started.
          (let ((r (meta-log-federation-guides--emacs
                    (list (concat "HOME=" home))
                    `(progn
                       (load ,loaddefs nil t)
                       (dolist (c ',commands)
                         (unless (and (autoloadp (symbol-function c)) (commandp c))
                           (princ (format "NOT-AUTOLOADED %s\n" c))))
                       (let ((r (call-interactively 'meta-log-federation-embedded-broker-stop)))
                         (princ (format "BROKER-STOP %S\n" r)))
                       (when (featurep 'meta-log-federation-module)
                         (princ "MODULE-LOADED\n"))))))
            (should (zerop (car r)))
            (should-not (string-search "NOT-AUTOLOADED" (cdr r)))
            (should (string-search "BROKER-STOP nil" (cdr r)))
            (should-not (string-search "MODULE-LOADED" (cdr r))))
          ;; After a plain `require' (the README's install), each is a command.
          (let ((r (meta-log-federation-guides--emacs
                    (list (concat "HOME=" home))
                    `(progn
                       (require 'meta-log-federation)
                       (require 'meta-log-peer-sync-demo)
                       (dolist (c ',commands)
                         (unless (commandp c)
                           (princ (format "NOT-A-COMMAND %s\n" c))))))))
            (should (zerop (car r)))
            (should-not (string-search "NOT-A-COMMAND" (cdr r)))))
      (delete-directory copy t)
      (delete-directory home t))))

;;;; Snippets

(defun meta-log-federation-guides-snippets (file)
  "Return the ```elisp blocks of FILE as plists.
Keys: :file, :line, :code and the directives of the marker lines above
it: :skip (the reason), :federation, :broker (the address that stands
for the private broker) and :setup (a list of forms)."
  (let ((snippets nil))
    (with-temp-buffer
      (insert-file-contents file)
      (goto-char (point-min))
      (while (re-search-forward "^```elisp[ \t]*\n" nil t)
        (let* ((line (line-number-at-pos (match-beginning 0)))
               (start (point))
               (end (progn (re-search-forward "^```[ \t]*$") (match-beginning 0)))
               (snippet (list :file file :line line
                              :code (buffer-substring-no-properties start end))))
          (save-excursion
            (goto-char start)
            (forward-line -2)
            (while (looking-at "^<!-- guide-test: \\(.*\\) -->[ \t]*$")
              (let ((d (match-string 1)))
                (cond
                 ((string-match "\\`skip \\(.+\\)" d)
                  (setq snippet (plist-put snippet :skip (match-string 1 d))))
                 ((equal d "federation")
                  (setq snippet (plist-put snippet :federation t)))
                 ((string-match "\\`broker \\(.+\\)" d)
                  (setq snippet (plist-put snippet :broker (match-string 1 d))))
                 ((string-match "\\`setup \\(.+\\)" d)
                  (setq snippet (plist-put snippet :setup
                                           (append (plist-get snippet :setup)
                                                   (list (car (read-from-string
                                                               (match-string 1 d))))))))
                 (t (error "%s:%d: unknown guide-test directive %S" file line d))))
              (forward-line -1)))
          (push snippet snippets))))
    (nreverse snippets)))

(defun meta-log-federation-guides-run-forms (file)
  "Evaluate the forms of FILE in order; on an error say which and exit 1.
Run in the scratch Emacs of a snippet."
  (let ((forms nil))
    (with-temp-buffer
      (insert-file-contents file)
      (goto-char (point-min))
      (condition-case nil
          (while t (push (read (current-buffer)) forms))
        (end-of-file nil)))
    (dolist (form (nreverse forms))
      (condition-case err
          (eval form t)
        (error
         (princ (format "SNIPPET-SIGNALLED %S\n  in %S\n" err form))
         (ignore-errors (meta-log-federation-shutdown))
         (kill-emacs 1))))
    (ignore-errors (meta-log-federation-shutdown))
    (princ "SNIPPET-OK\n")
    (kill-emacs 0)))

(defun meta-log-federation-guides--run-snippet (snippet broker-port)
  "Run SNIPPET in a fresh batch Emacs against the broker on BROKER-PORT.
Return (EXIT-CODE . OUTPUT)."
  (let* ((home (make-temp-file "guides-home-" t))
         (file (expand-file-name "snippet.el" home))
         (broker (format "127.0.0.1:%d" broker-port))
         (code (plist-get snippet :code)))
    (unwind-protect
        (progn
          (when (plist-get snippet :broker)
            (setq code (string-replace (plist-get snippet :broker) broker code)))
          (with-temp-file file
            (when (plist-get snippet :federation)
              (insert "(require 'meta-log-federation)\n(meta-log-federation-init)\n"
                      "(meta-log-federation-wait-until #'meta-log-federation-connected-p 10)\n"))
            (insert code "\n"))
          (meta-log-federation-guides--emacs
           (list (concat "HOME=" home)
                 (concat "META_LOG_MQTT_BROKER=mqtt://" broker)
                 "META_LOG_ENABLE_FEDERATION=")
           `(setq default-directory ,(file-name-as-directory meta-log-federation-guides-root)
                  meta-log-federation-verbose nil)
           `(progn ,@(plist-get snippet :setup))
           `(load ,(expand-file-name "meta-log-federation-guides-test.el"
                                     (file-name-directory
                                      (locate-library "meta-log-federation-guides-test")))
                  nil t)
           `(meta-log-federation-guides-run-forms ,file)))
      (delete-directory home t))))

(ert-deftest guides::every-elisp-snippet-runs-without-signalling ()
  (require 'meta-log-federation-test-helpers)
  (meta-log-federation-test-ensure-broker)
  (let ((ran 0) (failures nil) (skipped nil))
    (dolist (file (meta-log-federation-guides-files))
      (dolist (s (meta-log-federation-guides-snippets file))
        (if (plist-get s :skip)
            (push (format "%s:%d (%s)" (file-name-nondirectory file) (plist-get s :line)
                          (plist-get s :skip))
                  skipped)
          (cl-incf ran)
          (let ((r (meta-log-federation-guides--run-snippet
                    s (symbol-value 'meta-log-federation-test-broker-port))))
            (unless (and (zerop (car r)) (string-search "SNIPPET-OK" (cdr r)))
              (push (format "%s:%d: %s" (file-name-nondirectory file) (plist-get s :line)
                            (cdr r))
                    failures))))))
    (message "guides: %d snippets ran, %d skipped on purpose: %s"
             ran (length skipped) (string-join (nreverse skipped) "; "))
    (should (> ran 0))
    (should-not failures)))

(provide 'meta-log-federation-guides-test)
;;; meta-log-federation-guides-test.el ends here
