;;; meta-log-federation-canvasl-test.el --- CanvasL parsing from Elisp  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; ert tests of `meta-log-federation-canvasl-parse' on the real-world
;; corpus in tests/data/corpus and on made-up oddities.

;;; Code:

(require 'ert)
(require 'cl-lib)
(require 'meta-log-federation)

(defvar meta-log-federation-test-corpus
  (expand-file-name "../tests/data/corpus/"
                    (file-name-directory (or load-file-name buffer-file-name)))
  "Directory of the real-world CanvasL files.")

(defun meta-log-federation-test-corpus-file (name)
  "Return the path of corpus file NAME."
  (expand-file-name name meta-log-federation-test-corpus))

(defun meta-log-federation-test-temp-canvas (bytes)
  "Write the unibyte string BYTES to a temporary file and return its name."
  (let ((file (make-temp-file "mlf-canvas-" nil ".canvasl"))
        (coding-system-for-write 'no-conversion))
    (with-temp-file file
      (set-buffer-multibyte nil)
      (insert bytes))
    file))

(ert-deftest canvasl::corpus-file-with-duplicate-ids ()
  (let* ((parsed (meta-log-federation-canvasl-parse
                  (meta-log-federation-test-corpus-file "automaton__automaton.fast.canvasl")))
         (entries (plist-get parsed :entries))
         (dups (cl-count 'duplicate-id (plist-get parsed :warnings) :key #'cadr)))
    (should (= 400 (length entries)))
    (should (= 220 dups))
    ;; Entries sharing an id stay distinct: (id . occurrence) pairs are unique.
    (let ((keys (mapcar (lambda (e) (cons (plist-get e :id) (plist-get e :occurrence))) entries)))
      (should (= (length keys) (length (cl-remove-duplicates keys :test #'equal)))))
    ;; REPORT.md: six directives of the `@key: value' form.
    (should (= 6 (length (plist-get parsed :directives))))))

(ert-deftest canvasl::every-corpus-file-parses ()
  (dolist (file (directory-files meta-log-federation-test-corpus t "\\.\\(canvasl\\|jsonl\\)\\'"))
    (let ((parsed (meta-log-federation-canvasl-parse file)))
      (should (listp (plist-get parsed :entries)))
      (should-not (plist-get parsed :bom)))))

(ert-deftest canvasl::org-body-gives-warnings-not-errors ()
  (let ((parsed (meta-log-federation-canvasl-parse
                 (meta-log-federation-test-corpus-file
                  "meta-log__examples__demo-generated-template.canvasl"))))
    (should (null (plist-get parsed :entries)))
    (should (cl-find 'non-json-line (plist-get parsed :warnings) :key #'cadr))))

(ert-deftest canvasl::directive-forms-and-fields ()
  (let ((file (meta-log-federation-test-temp-canvas
               (concat "@version 1.0\n@schema: \"canvasl\"\n@mode: fast // comment\n\n"
                       "{\"id\":\"n1\",\"type\":\"text\",\"x\":1.5}\n"
                       "{\"id\":\"e1\",\"fromNode\":\"n1\",\"toNode\":\"n1\"}\n"))))
    (unwind-protect
        (let* ((parsed (meta-log-federation-canvasl-parse file))
               (first (car (plist-get parsed :entries))))
          (should (equal (plist-get parsed :directives)
                         '(("version" . "1.0") ("schema" . "canvasl") ("mode" . "fast"))))
          (should (equal (plist-get first :id) "n1"))
          (should (equal (plist-get first :type) "text"))
          (should (= (plist-get first :line) 5))
          (should (equal (meta-log-federation-canvasl-entry-fields first)
                         '((id . "n1") (type . "text") (x . 1.5)))))
      (delete-file file))))

(ert-deftest canvasl::crlf-and-bom-are-reported ()
  (let ((file (meta-log-federation-test-temp-canvas
               (concat "\357\273\277@version 1.0\r\n{\"id\":\"a\"}\r\n"))))
    (unwind-protect
        (let ((parsed (meta-log-federation-canvasl-parse file)))
          (should (plist-get parsed :bom))
          (should (plist-get parsed :crlf))
          (should (cl-find 'crlf (plist-get parsed :warnings) :key #'cadr))
          (should (= 1 (length (plist-get parsed :entries)))))
      (delete-file file))))

(ert-deftest canvasl::bad-input-signals-clearly ()
  (should-error (meta-log-federation-canvasl-parse "/nonexistent/x.canvasl")
                :type 'meta-log-federation-error)
  (let ((file (meta-log-federation-test-temp-canvas "{\"id\":\"\377\"}\n")))
    (unwind-protect
        (let ((err (should-error (meta-log-federation-canvasl-parse file)
                                 :type 'meta-log-federation-error)))
          (should (string-match-p "UTF-8" (cadr err))))
      (delete-file file))))

(provide 'meta-log-federation-canvasl-test)
;;; meta-log-federation-canvasl-test.el ends here
