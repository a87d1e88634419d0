;;; run-tests.el --- Run the ert suites and print a plain summary  -*- lexical-binding: t; -*-

;;; Commentary:

;; emacs --batch -Q -L lisp -L test -l test/run-tests.el [SELECTOR-REGEXP]
;; Loads every test/*-test.el, runs the tests (those matching
;; SELECTOR-REGEXP, and not the environment's META_LOG_TEST_EXCLUDE
;; regexp when it is set), prints
;; "N passed, M failed, K skipped" as its last line and exits non-zero
;; on any failure.  A skipped test (`ert-skip': something this machine
;; or build lacks) is neither a pass nor a failure; ert names it above,
;; on a line starting "  skipped".

;;; Code:

(require 'ert)

(let ((dir (file-name-directory load-file-name)))
  (dolist (file (directory-files dir t "-test\\.el\\'"))
    (load file nil t)))

(defun meta-log-federation-test-summary (stats)
  "Return the summary line of ert STATS: passes, failures and skips.
ert counts a skip in neither `ert-stats-completed-expected' nor
`ert-stats-completed-unexpected', so the three add up to the tests run."
  (format "%d passed, %d failed, %d skipped"
          (ert-stats-completed-expected stats)
          (ert-stats-completed-unexpected stats)
          (ert-stats-skipped stats)))

(when noninteractive
  (let* ((selector (or (car command-line-args-left) t))
         (exclude (getenv "META_LOG_TEST_EXCLUDE"))
         (selector (if (and exclude (not (equal exclude "")))
                       `(and ,selector (not ,exclude))
                     selector))
         (stats (ert-run-tests-batch selector))
         (unexpected (ert-stats-completed-unexpected stats)))
    (setq command-line-args-left nil)
    (princ (concat (meta-log-federation-test-summary stats) "\n"))
    (kill-emacs (if (zerop unexpected) 0 1))))

;;; run-tests.el ends here
