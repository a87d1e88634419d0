;;; meta-log-federation-patch-peers-test.el --- A 100,000-entry canvas edited in two Emacs  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; This Emacs shares a generated 100,000-entry canvas (10 MB) with a
;; batch Emacs peer on the test broker.  The peer visits the file with
;; point in the middle and types an entry it does not save; an edit made
;; here then leaves its buffer, point and file alone (the file is held),
;; its save merges both edits, and a later edit made here is patched
;; into its unmodified buffer, not reverted: point stays on its text.

;;; Code:

(require 'meta-log-federation-federation-test)
(require 'cl-lib)

(defun meta-log-federation-patch-test-canvas (file n)
  "Write a canvas of N generated entries to FILE."
  (with-temp-file file
    (insert "@version 1.0\n@schema canvasl\n")
    (dotimes (i n)
      (insert (format "{\"id\":\"n%d\",\"type\":\"text\",\"text\":\"node %d\",\"x\":%d,\"y\":%d}\n"
                      i i (* 10 (% i 100)) (* 10 (/ i 100)))))))

(defun meta-log-federation-patch-test-start-peer (name)
  "Start a batch Emacs peer NAME that takes buffer commands; return it when ready."
  (let* ((name (format "%s-%d" name (random 1000000)))
         (dir (meta-log-federation-test-peer-dir name))
         (here (file-name-directory (locate-library "meta-log-federation-test-helpers")))
         (proc (make-process
                :name (format "peer-%s" name)
                :buffer (generate-new-buffer (format " *peer-%s*" name)) :noquery t
                :command (append
                          (meta-log-federation-test-emacs-command
                           `(setq test-peer-name ,name test-peer-dir ,dir
                                  test-peer-broker ,(meta-log-federation-test-broker-url)
                                  large-file-warning-threshold nil)
                           `(load ,(expand-file-name "meta-log-federation-patch-peer.el" here)))
                          (list "-l" (expand-file-name "meta-log-federation-test-peer.el" here))))))
    (push proc meta-log-federation-test-peers)
    (process-put proc 'dir dir)
    (let ((id (meta-log-federation-wait-until
               (lambda () (meta-log-federation-test-peer-line proc "READY \\([0-9a-f]+\\)"))
               30)))
      (unless id (error "Peer %s did not start" name))
      (process-put proc 'peer-id id))
    proc))

(defun meta-log-federation-patch-test-reports (proc word)
  "Return PROC's report lines starting with WORD, oldest first."
  (with-current-buffer (process-buffer proc)
    (save-excursion
      (goto-char (point-min))
      (let (out)
        (while (re-search-forward (format "^PEER: %s\\(.*\\)$" word) nil t)
          (push (match-string 1) out))
        (nreverse out)))))

(defun meta-log-federation-patch-test-ask (proc command word)
  "Send COMMAND to PROC; return its next report line starting with WORD."
  (let ((n (length (meta-log-federation-patch-test-reports proc word))))
    (meta-log-federation-send-peer-message (process-get proc 'peer-id) command)
    (should (meta-log-federation-wait-until
             (lambda () (> (length (meta-log-federation-patch-test-reports proc word)) n))
             60))
    (car (last (meta-log-federation-patch-test-reports proc word)))))

(defun meta-log-federation-patch-test-state (proc url needle)
  "Return what PROC's buffer of URL shows, as a plist.
Its :has tells whether NEEDLE is in the buffer."
  (let ((r (meta-log-federation-patch-test-ask proc (format "pstate:%s|%s" url needle) "PSTATE")))
    (unless (string-match "\\` \\([a-z]+\\) \\([a-z]+\\) \\([0-9]+\\) \\([0-9]+\\) \\([0-9]+\\) \\([0-9]+\\) \\(.*\\)\\'" r)
      (error "Bad report %S" r))
    (list :modified (equal (match-string 1 r) "modified")
          :has (equal (match-string 2 r) "has")
          :lines (string-to-number (match-string 3 r))
          :column (string-to-number (match-string 4 r))
          :patched (string-to-number (match-string 5 r))
          :reverted (string-to-number (match-string 6 r))
          :line (match-string 7 r))))

(defun meta-log-federation-patch-test-insert-and-save (file line text)
  "Insert TEXT as a new line before LINE of FILE through its buffer, and save."
  (with-current-buffer (find-file-noselect file)
    (goto-char (point-min))
    (forward-line (1- line))
    (insert text "\n")
    (save-buffer)))

(ert-deftest patch::a-remote-edit-of-a-100k-canvas-moves-nothing-and-loses-nothing ()
  (meta-log-federation-test-with-federation
    (let* ((large-file-warning-threshold nil)
           (file (expand-file-name "large-100k.canvasl" (meta-log-federation-test-peer-dir "own")))
           (me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
           (bob (meta-log-federation-patch-test-start-peer "bob"))
           (bob-file (expand-file-name (format "sync/%s/large-100k.canvasl" me)
                                       (process-get bob 'dir)))
           (lines (+ 2 100000))
           url state line-text)
      (meta-log-federation-patch-test-canvas file 100000)
      (should (meta-log-federation-wait-until
               (lambda () (meta-log-federation-peer (process-get bob 'peer-id))) 20))
      (setq url (meta-log-federation-share-canvasl file))
      (should (meta-log-federation-wait-until
               (lambda () (equal (meta-log-federation-test-file-string file)
                                 (meta-log-federation-test-file-string bob-file)))
               120))
      ;; Bob visits the file, point on line 50,000 column 5, and types an
      ;; entry on line 70,000 without saving.
      (meta-log-federation-patch-test-ask bob (format "pvisit:%s|50000|5" url) "PVISITED")
      (meta-log-federation-patch-test-ask
       bob (format "ptype:%s|70000|{\"id\":\"typed-by-bob\"}" url) "PTYPED")
      (setq state (meta-log-federation-patch-test-state bob url "typed-by-bob"))
      (should (plist-get state :modified))
      (should (plist-get state :has))
      (setq line-text (plist-get state :line))
      (should (string-prefix-p "{\"id\":\"n49997\"" line-text))
      ;; An entry added here, above Bob's point: his engine merges it...
      (meta-log-federation-patch-test-insert-and-save file 30000 "{\"id\":\"from-alice\"}")
      (should (meta-log-federation-wait-until
               (lambda () (= (plist-get (meta-log-federation-patch-test-state bob url "x") :lines)
                             (1+ lines)))
               60))
      ;; ...but his buffer with unsaved edits and his file are left alone.
      (setq state (meta-log-federation-patch-test-state bob url "from-alice"))
      (should (plist-get state :modified))
      (should-not (plist-get state :has))
      (should (equal (plist-get state :line) line-text))
      (should (= (plist-get state :column) 5))
      (should-not (string-search "from-alice" (meta-log-federation-test-file-string bob-file)))
      (should (plist-get (meta-log-federation-patch-test-state bob url "typed-by-bob") :has))
      ;; Bob saves: both edits everywhere, his point still on its text.
      (meta-log-federation-patch-test-ask bob (format "psave:%s" url) "PSAVED")
      (should (meta-log-federation-wait-until
               (lambda () (let ((mine (meta-log-federation-test-file-string file)))
                            (and (string-search "typed-by-bob" mine)
                                 (string-search "from-alice" mine)
                                 (equal mine (meta-log-federation-test-file-string bob-file)))))
               60))
      (setq state (meta-log-federation-patch-test-state bob url "from-alice"))
      (should-not (plist-get state :modified))
      (should (plist-get state :has))
      (should (equal (plist-get state :line) line-text))
      (should (= (plist-get state :column) 5))
      ;; Another edit here reaches his unmodified buffer as a patch, not a revert.
      (let ((patched (plist-get state :patched)))
        (meta-log-federation-patch-test-insert-and-save file 10 "{\"id\":\"again-alice\"}")
        (should (meta-log-federation-wait-until
                 (lambda () (plist-get (meta-log-federation-patch-test-state bob url "again-alice")
                                       :has))
                 60))
        (setq state (meta-log-federation-patch-test-state bob url "typed-by-bob"))
        (should (plist-get state :has))
        (should-not (plist-get state :modified))
        (should (equal (plist-get state :line) line-text))
        (should (= (plist-get state :column) 5))
        (should (> (plist-get state :patched) patched))
        (should (= (plist-get state :reverted) 0)))
      (should (equal (meta-log-federation-test-file-string file)
                     (meta-log-federation-test-file-string bob-file)))
      (kill-buffer (find-buffer-visiting file)))))

(provide 'meta-log-federation-patch-peers-test)
;;; meta-log-federation-patch-peers-test.el ends here
