;;; meta-log-federation-patch-test.el --- Buffers patched in place, saves sent as lines  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; The Elisp half of "sync that costs the edit": hunks patch a buffer
;; in place (point, mark, undo and the modified flag kept; hunks that
;; do not fit change nothing), and the span recorded from
;; `after-change-functions' always rebuilds the saved text from the old
;; one.  The two-Emacs test on a 100,000-entry canvas is in
;; meta-log-federation-patch-peers-test.el.

;;; Code:

(require 'ert)
(require 'cl-lib)
(require 'meta-log-federation-patch)

(defmacro meta-log-federation-patch-test-visiting (text &rest body)
  "Run BODY in a buffer visiting a temporary file holding TEXT."
  (declare (indent 1) (debug t))
  `(let* ((file (make-temp-file "mlf-patch-" nil ".canvasl" ,text))
          (buffer (let ((coding-system-for-read 'utf-8-unix))
                    (find-file-noselect file))))
     (unwind-protect
         (with-current-buffer buffer
           (setq buffer-file-coding-system 'utf-8-unix)
           ,@body)
       (with-current-buffer buffer (set-buffer-modified-p nil))
       (kill-buffer buffer)
       (delete-file file))))

(defun meta-log-federation-patch-test-write (file text)
  "Write TEXT to FILE as the engine would (UTF-8, no conversion)."
  (let ((coding-system-for-write 'utf-8-unix))
    (write-region text nil file nil 'silent)))

(ert-deftest patch::hunks-patch-the-buffer-in-place-keeping-point-mark-and-undo ()
  (meta-log-federation-patch-test-visiting "l0\nl1\nl2\nl3\nl4\n"
    (buffer-enable-undo)
    (goto-char (point-min))
    (forward-line 3)
    (forward-char 1)                    ; point: "l3" column 1
    (push-mark (+ (point-min) 1) t)     ; mark: "l0" column 1
    (let ((undo-before (progn (undo-boundary)
                              (insert "x") (delete-char -1) (undo-boundary)
                              (set-buffer-modified-p nil)
                              buffer-undo-list)))
      (meta-log-federation-patch-test-write file "l0\nL1\nnew\nl2\nl3\n")
      ;; Hunks from "l0 l1 l2 l3 l4" to "l0 L1 new l2 l3": line 1 replaced by
      ;; two lines, line 4 deleted.
      (should (meta-log-federation--patch-apply
               [[1 1 "L1\nnew\n" "l1\n" 3] [4 1 "" "l4\n" 12]] file))
      (should (equal (buffer-string) "l0\nL1\nnew\nl2\nl3\n"))
      (should (equal (buffer-substring (line-beginning-position) (line-end-position)) "l3"))
      (should (= (current-column) 1))
      (should (= (mark t) (+ (point-min) 1)))
      (should-not (buffer-modified-p))
      (should (verify-visited-file-modtime))
      ;; The user's undo history is still there, after the patch's own entries.
      (should (memq (car undo-before) buffer-undo-list)))))

(ert-deftest patch::hunks-that-do-not-fit-change-nothing ()
  (meta-log-federation-patch-test-visiting "a\nb\nc\n"
    (meta-log-federation-patch-test-write file "a\nB\nc\n")
    (should-not (meta-log-federation--patch-apply [[1 1 "B\n" "X\n" 2]] file))
    (should-not (meta-log-federation--patch-apply [[1 1 "B\n" "b\n" 3]] file))
    (should (equal (buffer-string) "a\nb\nc\n"))
    (should-not (buffer-modified-p))))

(defun meta-log-federation-patch-test-rebuild (old head tail middle)
  "Return OLD with all but its first HEAD and last TAIL bytes replaced by MIDDLE.
The result is UTF-8 bytes, as the engine builds the saved file."
  (let ((old (encode-coding-string old 'utf-8-unix)))
    (concat (substring old 0 head)
            (encode-coding-string middle 'utf-8-unix)
            (substring old (- (length old) tail)))))

(ert-deftest patch::the-recorded-span-rebuilds-the-saved-text ()
  ;; Many seeds of random typing and deleting (newlines included): the
  ;; lines handed over, put between the unchanged ones, give the new text.
  (dotimes (seed 200)
    (let ((old (mapconcat (lambda (i) (format "line %d" i)) (number-sequence 0 (% seed 9)) "\n")))
      (when (cl-evenp seed) (setq old (concat old "\n")))
      (meta-log-federation-patch-test-visiting old
        (meta-log-federation--patch-reset)
        (random (format "mlf-patch-%d" seed))
        (dotimes (_ (1+ (random 5)))
          (let ((at (1+ (random (buffer-size)))))
            (if (zerop (random 3))
                (delete-region at (min (point-max) (+ at (random 6))))
              (goto-char at)
              (insert (nth (random 4) '("x" "\n" "é\nz" "new line\n"))))))
        (let ((edit (meta-log-federation--patch-edit)))
          (should edit)
          (should (equal (apply #'meta-log-federation-patch-test-rebuild old edit)
                         (encode-coding-string (buffer-string) 'utf-8-unix)))
          ;; Whole lines: HEAD ends a line of the old text, TAIL starts one.
          (let ((bytes (encode-coding-string old 'utf-8-unix)))
            (should (or (= (nth 0 edit) 0) (eq (aref bytes (1- (nth 0 edit))) ?\n)))
            (should (or (= (nth 1 edit) 0)
                        (= (nth 1 edit) (length bytes))
                        (eq (aref bytes (- (length bytes) (nth 1 edit) 1)) ?\n)))))))))

(ert-deftest patch::no-span-is-recorded-for-a-buffer-not-tracked-or-not-plain-utf-8 ()
  (meta-log-federation-patch-test-visiting "a\nb\n"
    (insert "x")
    (should-not (meta-log-federation--patch-edit))
    (meta-log-federation--patch-reset)
    (insert "y")
    (should (meta-log-federation--patch-edit))
    (setq buffer-file-coding-system 'utf-8-dos)
    (should-not (meta-log-federation--patch-edit))))

(provide 'meta-log-federation-patch-test)
;;; meta-log-federation-patch-test.el ends here
