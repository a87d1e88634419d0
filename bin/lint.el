;;; lint.el --- Byte-compile and checkdoc the package's Elisp  -*- lexical-binding: t; -*-

;;; Commentary:

;; emacs --batch -Q -L lisp -L test -l bin/lint.el FILE...
;; Every file must say lexical-binding: t on its first line and
;; byte-compile without warnings; the package's own files (lisp/) must also
;; pass checkdoc.  Exits 1 on any problem.

;;; Code:

(require 'checkdoc)
(require 'bytecomp)
(require 'cl-lib)
(require 'warnings)  ; loaded now, so that the display-warning override below sticks

(defvar lint-failed nil "Non-nil once a check failed.")

(defun lint-file (file)
  "Run the checks on FILE."
  (with-temp-buffer
    (insert-file-contents file)
    (unless (string-match-p "lexical-binding: t"
                            (buffer-substring (point-min) (line-end-position)))
      (message "%s: first line lacks lexical-binding: t" file)
      (setq lint-failed t)))
  (let ((byte-compile-error-on-warn t))
    (unless (byte-compile-file file)
      (message "%s: byte-compilation failed" file)
      (setq lint-failed t)))
  (let ((elc (concat file "c")))
    (when (file-exists-p elc) (delete-file elc)))
  (when (string-prefix-p "lisp/" file)
    ;; In batch Emacs, checkdoc reports each problem through `display-warning'.
    (let ((problems 0))
      (cl-letf* ((orig (symbol-function 'display-warning))
                 ((symbol-function 'display-warning)
                  (lambda (&rest args)
                    (setq problems (1+ problems))
                    (apply orig args))))
        (checkdoc-file file))
      (when (> problems 0)
        (message "%s: %d checkdoc problems" file problems)
        (setq lint-failed t)))))

(mapc #'lint-file command-line-args-left)
(setq command-line-args-left nil)
(kill-emacs (if lint-failed 1 0))

;;; lint.el ends here
