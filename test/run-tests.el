;;; run-tests.el --- Run the ert suites and print a plain summary  -*- lexical-binding: t; -*-

;;; Commentary:

;; emacs --batch -Q -L lisp -L test -l test/run-tests.el [SELECTOR-REGEXP]
;; Loads every test/*-test.el, runs the tests, prints "N passed, M failed"
;; as its last line and exits non-zero on any failure.

;;; Code:

(require 'ert)

(let ((dir (file-name-directory load-file-name)))
  (dolist (file (directory-files dir t "-test\\.el\\'"))
    (load file nil t)))

(let* ((selector (or (car command-line-args-left) t))
       (stats (ert-run-tests-batch selector))
       (unexpected (ert-stats-completed-unexpected stats))
       (skipped (ert-stats-skipped stats))
       (passed (- (ert-stats-completed-expected stats) skipped)))
  (setq command-line-args-left nil)
  (princ (format "%d passed, %d failed%s\n" passed unexpected
                 (if (> skipped 0) (format ", %d skipped" skipped) "")))
  (kill-emacs (if (zerop unexpected) 0 1)))

;;; run-tests.el ends here
