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

(defun meta-log-federation-build-test--output (&optional before-finished)
  "Return the recorded cargo output; with BEFORE-FINISHED, cut before \"Finished\"."
  (with-temp-buffer
    (insert-file-contents-literally meta-log-federation-build-test--output)
    (when before-finished
      (goto-char (point-max))
      (re-search-backward "[\r\n] *Finished")
      (delete-region (1+ (point)) (point-max)))
    (buffer-string)))

(defun meta-log-federation-build-test--last-bar ()
  "Return (DONE TOTAL) of the last progress bar in the recorded output."
  (let ((output (meta-log-federation-build-test--output))
        (start 0)
        last)
    (while (string-match "Building \\[[^]]*\\] \\([0-9]+\\)/\\([0-9]+\\)" output start)
      (setq last (list (string-to-number (match-string 1 output))
                       (string-to-number (match-string 2 output)))
            start (match-end 0)))
    last))

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

(defun meta-log-federation-build-test--chunks (output size)
  "Return OUTPUT cut into pieces of SIZE characters."
  (cl-loop for i from 0 below (length output) by size
           collect (substring output i (min (length output) (+ i size)))))

(defun meta-log-federation-build-test--lines (text)
  "Return the lines of TEXT, without the empty last one."
  (split-string text "\n" t))

(defun meta-log-federation-build-test--check-running (text progress)
  "Check TEXT and PROGRESS left by the filter after the output up to \"Finished\"."
  (pcase-let ((`(,done ,total) (meta-log-federation-build-test--last-bar)))
    (should (equal (butlast progress) (list done total)))
    ;; cargo's lines are kept, without carriage returns or piled-up bars
    (should (string-match-p "^ *Compiling automerge v0\\.12\\.0$" text))
    (should-not (string-search "\r" text))
    (should-not (string-match-p "Building \\[" text))
    ;; one status line, the last one: time, progress, what is left
    (should (= 1 (cl-count-if (lambda (l) (string-match-p "building the native module" l))
                              (meta-log-federation-build-test--lines text))))
    (should (string-match-p
             (format "building the native module, 1:[0-9][0-9] elapsed, %d of %d steps done, %d left (now: [a-z]"
                     done total (- total done))
             (car (last (meta-log-federation-build-test--lines text)))))))

(ert-deftest build::progress-from-a-real-cargo-output ()
  "While cargo runs, its lines stay and one status line says time, done, left."
  (apply #'meta-log-federation-build-test--check-running
         (meta-log-federation-build-test--feed
          (list (meta-log-federation-build-test--output t)))))

(ert-deftest build::a-bar-split-between-two-reads-is-not-misread ()
  "Output cut at every 7th character gives the same result as in one piece."
  (apply #'meta-log-federation-build-test--check-running
         (meta-log-federation-build-test--feed
          (meta-log-federation-build-test--chunks
           (meta-log-federation-build-test--output t) 7))))

(ert-deftest build::finished-replaces-the-status-line ()
  "Once cargo says Finished, that is the last line, however the output came."
  (dolist (chunks (list (list (meta-log-federation-build-test--output))
                        (meta-log-federation-build-test--chunks
                         (meta-log-federation-build-test--output) 7)))
    (pcase-let ((`(,text ,_) (meta-log-federation-build-test--feed chunks)))
      (should (string-match-p "^ *Finished `release` profile"
                              (car (last (meta-log-federation-build-test--lines text)))))
      (should-not (string-match-p "building the native module" text)))))

(ert-deftest build::status-before-cargo-reports-progress ()
  "Before the first bar, the status says the build is starting and how long it takes."
  (should (string-match-p
           "0:04 elapsed (cargo is starting; a first build takes one to three minutes)"
           (meta-log-federation--build-status 4.2 nil))))

(provide 'meta-log-federation-build-test)
;;; meta-log-federation-build-test.el ends here
