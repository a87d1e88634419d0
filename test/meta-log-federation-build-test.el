;;; meta-log-federation-build-test.el --- Progress of the module build  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; A first `require' builds the native module for minutes: the person
;; must see cargo's progress, the elapsed time and what is left.
;; test/data/cargo-progress.txt is an excerpt of what a real cold
;; `cargo build --release' of this crate wrote into a pipe with
;; CARGO_TERM_PROGRESS_WHEN=always (progress bars ended by carriage
;; returns, "Compiling" lines, and "Finished"); a real process (cat)
;; feeds it to the build's process filter.  Needs no native module.

;;; Code:

(require 'ert)
(require 'cl-lib)
(require 'meta-log-federation-build)

(defconst meta-log-federation-build-test--output
  (expand-file-name "data/cargo-progress.txt"
                    (file-name-directory (or load-file-name buffer-file-name)))
  "Recorded output of a real cold cargo build.")

(defun meta-log-federation-build-test--last-bar ()
  "Return (DONE TOTAL) of the last progress bar in the recorded output."
  (with-temp-buffer
    (insert-file-contents-literally meta-log-federation-build-test--output)
    (goto-char (point-max))
    (re-search-backward "Building \\[[^]]*\\] \\([0-9]+\\)/\\([0-9]+\\)")
    (list (string-to-number (match-string 1)) (string-to-number (match-string 2)))))

(defun meta-log-federation-build-test--feed (chunks)
  "Feed CHUNKS (strings) to the build filter of a real process.
Return the text of its buffer and the progress it recorded."
  (let* ((buffer (generate-new-buffer " *build-test*"))
         (process (make-process :name "build-test" :buffer buffer :command '("true")
                                :noquery t :sentinel #'ignore)))
    (unwind-protect
        (progn
          (process-put process 'started (- (float-time) 75))
          (dolist (chunk chunks)
            (meta-log-federation--build-filter process chunk))
          (list (with-current-buffer buffer (buffer-string))
                (process-get process 'progress)))
      (when (process-live-p process) (delete-process process))
      (kill-buffer buffer))))

(defun meta-log-federation-build-test--check (text progress)
  "Check the buffer TEXT and PROGRESS left by the filter after the recorded output."
  (pcase-let ((`(,done ,total) (meta-log-federation-build-test--last-bar)))
    (should (equal (butlast progress) (list done total)))
    ;; cargo's lines are kept, without carriage returns
    (should (string-match-p "^ *Compiling automerge v0\\.12\\.0$" text))
    (should-not (string-search "\r" text))
    ;; cargo's bars are not piled up: the status line replaces them
    (should-not (string-match-p "Building \\[" text))
    ;; one status line, the last one, saying time, progress and what is left
    (should (= 1 (cl-count-if (lambda (l) (string-match-p "building the native module" l))
                              (split-string text "\n"))))
    (should (string-match-p
             (format "building the native module, 1:[0-9][0-9] elapsed, %d of %d steps done, %d left (now: [a-z]"
                     done total (- total done))
             (car (last (split-string text "\n")))))))

(ert-deftest build::progress-from-a-real-cargo-output ()
  "The filter keeps cargo's lines and one status line: elapsed, done, left."
  (let ((output (with-temp-buffer
                  (insert-file-contents-literally meta-log-federation-build-test--output)
                  (buffer-string))))
    (apply #'meta-log-federation-build-test--check
           (meta-log-federation-build-test--feed (list output)))))

(ert-deftest build::a-bar-split-between-two-reads-is-not-misread ()
  "Output cut at every 7th character gives the same result as in one piece."
  (let* ((output (with-temp-buffer
                   (insert-file-contents-literally meta-log-federation-build-test--output)
                   (buffer-string)))
         (chunks (cl-loop for i from 0 below (length output) by 7
                          collect (substring output i (min (length output) (+ i 7))))))
    (apply #'meta-log-federation-build-test--check
           (meta-log-federation-build-test--feed chunks))))

(ert-deftest build::status-before-cargo-reports-progress ()
  "Before the first bar, the status says the build is starting and how long it takes."
  (should (string-match-p
           "0:04 elapsed (cargo is starting; a first build takes one to three minutes)"
           (meta-log-federation--build-status 4.2 nil))))

(provide 'meta-log-federation-build-test)
;;; meta-log-federation-build-test.el ends here
