;;; meta-log-federation-runner-test.el --- The summary line of test/run-tests.el  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; Runs test/run-tests.el in a child batch Emacs on a directory holding
;; a few known tests, and checks its summary line and exit status.

;;; Code:

(require 'ert)
(require 'cl-lib)

(defconst meta-log-federation-runner-test-file
  (expand-file-name "run-tests.el" (file-name-directory (or load-file-name buffer-file-name)))
  "The runner under test.")

(defun meta-log-federation-runner-test-run (tests)
  "Run the runner on a directory whose only test file defines TESTS.
TESTS is a list of (NAME . BODY-FORM).  Return (EXIT-STATUS . LAST-LINE)."
  (let ((dir (make-temp-file "mlf-runner-" t)))
    (unwind-protect
        (progn
          (copy-file meta-log-federation-runner-test-file (expand-file-name "run-tests.el" dir))
          (with-temp-file (expand-file-name "sample-test.el" dir)
            (insert ";;; -*- lexical-binding: t; -*-\n")
            (dolist (test tests)
              (prin1 `(ert-deftest ,(car test) () ,(cdr test)) (current-buffer))
              (insert "\n")))
          (with-temp-buffer
            (let ((status (call-process (expand-file-name invocation-name invocation-directory)
                                        nil t nil "--batch" "-Q" "-l"
                                        (expand-file-name "run-tests.el" dir))))
              (cons status (car (last (split-string (buffer-string) "\n" t)))))))
      (delete-directory dir t))))

(ert-deftest runner::summary-counts-passes-failures-and-skips ()
  (should (equal (meta-log-federation-runner-test-run
                  '((sample::pass-1 . (should t))
                    (sample::pass-2 . (should t))
                    (sample::skip . (ert-skip "not here"))))
                 '(0 . "2 passed, 0 failed, 1 skipped")))
  (should (equal (meta-log-federation-runner-test-run
                  '((sample::pass . (should t))
                    (sample::fail . (should nil))
                    (sample::skip-1 . (ert-skip "not here"))
                    (sample::skip-2 . (ert-skip "nor here"))))
                 '(1 . "1 passed, 1 failed, 2 skipped"))))

(provide 'meta-log-federation-runner-test)
;;; meta-log-federation-runner-test.el ends here
