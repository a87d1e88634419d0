;;; meta-log-federation-save-test.el --- Saves written by the sync worker, two Emacs  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; The edit path off Emacs' main thread (meta-log-federation-save.el,
;; src/sync/save.rs), with this Emacs and a batch Emacs peer on the
;; test broker: a save handed to the worker reaches the peer's buffer
;; and file and leaves the file exactly the buffer's text; a save that
;; meets a remote change held meanwhile keeps both, and nothing typed
;; is lost; a write the worker cannot make leaves the buffer modified
;; with a warning.

;;; Code:

(require 'meta-log-federation-patch-peers-test)
(require 'cl-lib)

(defun meta-log-federation-save-test-edit (file line text)
  "Insert TEXT as a new line before LINE of FILE's buffer and save it.
Return the number of times Emacs itself wrote FILE."
  (let* ((writes 0)
         (count (lambda (_start _end filename &rest _)
                  (when (and (stringp filename)
                             (equal (expand-file-name filename) (expand-file-name file)))
                    (cl-incf writes)))))
    (advice-add 'write-region :before count)
    (unwind-protect
        (with-current-buffer (find-file-noselect file)
          (goto-char (point-min))
          (forward-line (1- line))
          (insert text "\n")
          (save-buffer))
      (advice-remove 'write-region count))
    writes))

(defun meta-log-federation-save-test-saved-p (file)
  "Return non-nil once the worker has answered every save of FILE's buffer."
  (with-current-buffer (find-file-noselect file)
    (null meta-log-federation--save-pending)))

(ert-deftest save::a-save-is-written-by-the-worker-and-reaches-the-peer ()
  (meta-log-federation-test-with-federation
    (let* ((file (expand-file-name "by-worker.canvasl" (meta-log-federation-test-peer-dir "own")))
           (me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
           (bob (meta-log-federation-patch-test-start-peer "bob"))
           (bob-file (expand-file-name (format "sync/%s/by-worker.canvasl" me)
                                       (process-get bob 'dir)))
           url state)
      (meta-log-federation-patch-test-canvas file 40)
      (should (meta-log-federation-wait-until
               (lambda () (meta-log-federation-peer (process-get bob 'peer-id))) 20))
      (setq url (meta-log-federation-share-canvasl file))
      (should (meta-log-federation-wait-until
               (lambda () (equal (meta-log-federation-test-file-string file)
                                 (meta-log-federation-test-file-string bob-file)))
               60))
      (meta-log-federation-patch-test-ask bob (format "pvisit:%s|30|4" url) "PVISITED")
      ;; Emacs does not write the file: the worker does.
      (should (= 0 (meta-log-federation-save-test-edit file 10 "{\"id\":\"via-worker\"}")))
      (with-current-buffer (find-file-noselect file)
        (should-not (buffer-modified-p))
        (should (meta-log-federation-wait-until
                 (lambda () (meta-log-federation-save-test-saved-p file)) 30))
        ;; The file is exactly the buffer's text, and Emacs knows it is in step.
        (should (equal (meta-log-federation-test-file-string file)
                       (encode-coding-string
                        (save-restriction (widen) (buffer-substring-no-properties
                                                   (point-min) (point-max)))
                        'utf-8-unix)))
        (should (verify-visited-file-modtime))
        (should (time-equal-p (visited-file-modtime)
                              (file-attribute-modification-time (file-attributes file)))))
      ;; The peer's file and unmodified buffer have it; its point stayed on its text.
      (should (meta-log-federation-wait-until
               (lambda () (string-search "via-worker" (meta-log-federation-test-file-string bob-file)))
               30))
      (should (meta-log-federation-wait-until
               (lambda () (plist-get (meta-log-federation-patch-test-state bob url "via-worker") :has))
               30))
      (setq state (meta-log-federation-patch-test-state bob url "via-worker"))
      (should-not (plist-get state :modified))
      (should (string-prefix-p "{\"id\":\"n27\"" (plist-get state :line)))
      (should (= (plist-get state :column) 4))
      (should (meta-log-federation-wait-until
               (lambda () (equal (meta-log-federation-test-file-string file)
                                 (meta-log-federation-test-file-string bob-file)))
               30))
      (kill-buffer (find-buffer-visiting file)))))

(ert-deftest save::a-save-meeting-a-held-remote-change-keeps-both-and-loses-no-typing ()
  (meta-log-federation-test-with-federation
    (let* ((file (expand-file-name "both.canvasl" (meta-log-federation-test-peer-dir "own")))
           (me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
           (bob (meta-log-federation-patch-test-start-peer "bob"))
           (bob-file (expand-file-name (format "sync/%s/both.canvasl" me) (process-get bob 'dir)))
           (lines (+ 2 40))
           url state)
      (meta-log-federation-patch-test-canvas file 40)
      (should (meta-log-federation-wait-until
               (lambda () (meta-log-federation-peer (process-get bob 'peer-id))) 20))
      (setq url (meta-log-federation-share-canvasl file))
      (should (meta-log-federation-wait-until
               (lambda () (equal (meta-log-federation-test-file-string file)
                                 (meta-log-federation-test-file-string bob-file)))
               60))
      (meta-log-federation-patch-test-ask bob (format "pvisit:%s|20|1" url) "PVISITED")
      (dolist (round '(1 2))
        (let ((typed (format "typed-by-bob-%d" round))
              (mine (format "from-alice-%d" round)))
          ;; Bob types without saving; a change saved here meanwhile is merged by
          ;; his engine but held: neither his buffer nor his file changes.
          (meta-log-federation-patch-test-ask
           bob (format "ptype:%s|30|{\"id\":\"%s\"}" url typed) "PTYPED")
          (meta-log-federation-save-test-edit file 5 (format "{\"id\":\"%s\"}" mine))
          (cl-incf lines)
          (should (meta-log-federation-wait-until
                   (lambda () (>= (plist-get (meta-log-federation-patch-test-state bob url "x") :lines)
                                  lines))
                   30))
          (setq state (meta-log-federation-patch-test-state bob url mine))
          (should (plist-get state :modified))
          (should-not (plist-get state :has))
          (should (plist-get (meta-log-federation-patch-test-state bob url typed) :has))
          (should-not (string-search mine (meta-log-federation-test-file-string bob-file)))
          (should-not (string-search typed (meta-log-federation-test-file-string bob-file)))
          ;; Bob saves: both changes in both Emacs' files and buffers.
          (meta-log-federation-patch-test-ask bob (format "psave:%s" url) "PSAVED")
          (cl-incf lines)
          (should (meta-log-federation-wait-until
                   (lambda ()
                     (let ((here (meta-log-federation-test-file-string file)))
                       (and (string-search typed here) (string-search mine here)
                            (equal here (meta-log-federation-test-file-string bob-file)))))
                   30))
          (should (meta-log-federation-wait-until
                   (lambda () (plist-get (meta-log-federation-patch-test-state bob url mine) :has))
                   30))
          (setq state (meta-log-federation-patch-test-state bob url typed))
          (should (plist-get state :has))
          (should-not (plist-get state :modified))
          (should (meta-log-federation-wait-until
                   (lambda () (with-current-buffer (find-file-noselect file)
                                (save-excursion
                                  (goto-char (point-min))
                                  (search-forward typed nil t))))
                   30))
          (with-current-buffer (find-file-noselect file)
            (should-not (buffer-modified-p))
            (should (meta-log-federation-wait-until
                     (lambda () (equal (meta-log-federation-test-file-string file)
                                       (encode-coding-string (buffer-string) 'utf-8-unix)))
                     30)))))
      (kill-buffer (find-buffer-visiting file)))))

(ert-deftest save::a-write-the-worker-cannot-make-leaves-the-buffer-modified-and-warns ()
  (meta-log-federation-test-with-federation
    (let* ((dir (make-temp-file "mlf-save-fail-" t))
           (file (expand-file-name "frozen.canvasl" dir))
           (create-lockfiles nil)
           before)
      (meta-log-federation-patch-test-canvas file 20)
      (meta-log-federation-share-canvasl file)
      (setq before (meta-log-federation-test-file-string file))
      (with-current-buffer (find-file-noselect file)
        (goto-char (point-min))
        (forward-line 4)
        (insert "{\"id\":\"not-lost\"}\n")
        (unless (meta-log-federation-test-freeze-directory dir t)
          (set-buffer-modified-p nil)
          (kill-buffer)
          (ert-skip meta-log-federation-test-cannot-freeze))
        (unwind-protect
            (progn
              (when (get-buffer "*Warnings*")
                (kill-buffer "*Warnings*"))
              (save-buffer)
              ;; The worker cannot write: the buffer is marked modified again and a
              ;; warning says so; the file and the buffer's text are as they were.
              (should (meta-log-federation-wait-until #'buffer-modified-p 30))
              (should (get-buffer "*Warnings*"))
              (should (string-search "was not saved"
                                     (with-current-buffer "*Warnings*" (buffer-string))))
              (should (equal (meta-log-federation-test-file-string file) before))
              (should (save-excursion (goto-char (point-min)) (search-forward "not-lost" nil t))))
          (meta-log-federation-test-freeze-directory dir nil))
        ;; Saved once the problem is fixed.
        (save-buffer)
        (should (meta-log-federation-wait-until
                 (lambda () (string-search "not-lost" (meta-log-federation-test-file-string file)))
                 30))
        (should-not (buffer-modified-p))
        (kill-buffer)))))

(ert-deftest save::a-share-in-the-background-returns-its-url-at-once-and-says-when-ready ()
  (meta-log-federation-test-with-federation
    (let* ((dir (meta-log-federation-test-peer-dir "background"))
           (file (expand-file-name "background.canvasl" dir))
           (me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
           url)
      (meta-log-federation-patch-test-canvas file 30)
      ;; What can be checked at once is refused at once.
      (should-error (meta-log-federation-share-canvasl (expand-file-name "missing.canvasl" dir)
                                                       :background t)
                    :type 'meta-log-federation-error)
      (should-error (meta-log-federation-share-canvasl file :name "notes.exe" :background t)
                    :type 'meta-log-federation-error)
      (setq url (meta-log-federation-share-canvasl file :background t))
      (should (equal url (format "canvasl://%s/background.canvasl" me)))
      ;; Ready once the worker built it: listed, and the person is told.
      (should (meta-log-federation-wait-until
               (lambda () (member (file-truename file)
                                  (mapcar #'file-truename (meta-log-federation-shared-canvasl-files))))
               30))
      (should (meta-log-federation-wait-until
               (lambda () (with-current-buffer (messages-buffer)
                            (save-excursion
                              (goto-char (point-min))
                              (search-forward (format "as %s" url) nil t))))
               10))
      ;; What fails on the worker (it is shared already) comes as a warning.
      (when (get-buffer "*Warnings*")
        (kill-buffer "*Warnings*"))
      (should (equal (meta-log-federation-share-canvasl file :background t) url))
      (should (meta-log-federation-wait-until
               (lambda () (and (get-buffer "*Warnings*")
                               (string-search "Could not share"
                                              (with-current-buffer "*Warnings*" (buffer-string)))))
               10)))))

(provide 'meta-log-federation-save-test)
;;; meta-log-federation-save-test.el ends here
