;;; meta-log-federation-damage-test.el --- Damaged sync state and full disks cost no edit  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; Real batch Emacs peers and a private broker.  A share's merge state
;; damaged or missing, and a damaged list of shares, each end with both
;; peers' edits in both files and one warning that says what was kept
;; where; a full file system (a tiny tmpfs, root only) keeps the old
;; file, warns, runs the hook, and the file is written once space
;; returns, without another edit from the peer.

;;; Code:

(require 'meta-log-federation-sync-test)

(defun meta-log-federation-damage-test-replace (file from to)
  "Replace the text FROM by TO in FILE, as another program would."
  (let ((text (meta-log-federation-test-file-string file)))
    (should (string-search from text))
    (with-temp-file file
      (set-buffer-multibyte nil)
      (insert (string-replace from to text)))))

(defun meta-log-federation-damage-test-state-file (dir origin name)
  "Return the merge state of share ORIGIN/NAME of the peer whose files are in DIR."
  (expand-file-name (format "sync-state/%s/%s.automerge" origin name) dir))

(defun meta-log-federation-damage-test-kept (file)
  "Return the files kept aside for FILE (FILE.damaged-TIMESTAMP)."
  (directory-files (file-name-directory file) t
                   (concat "\\`" (regexp-quote (file-name-nondirectory file)) "\\.damaged-")))

(defun meta-log-federation-damage-test-both-edits (files)
  "Return non-nil when FILES agree and hold both test edits, each once."
  (and (meta-log-federation-test-converged files)
       (let ((text (meta-log-federation-test-file-string (car files))))
         (and (string-search "\"text\":\"alpha edited\"" text)
              (string-search "\"text\":\"beta edited\"" text)
              ;; Nothing duplicated: the canvas still has its 6 lines.
              (= 6 (length (split-string text "\n" t)))))))

(defun meta-log-federation-damage-test-peer-warnings (proc regexp)
  "Return how many warnings matching REGEXP peer PROC printed."
  (with-current-buffer (process-buffer proc)
    (how-many (concat "^Warning (meta-log-federation): .*" regexp) (point-min) (point-max))))

(defun meta-log-federation-damage-test-own-warnings (regexp)
  "Return how many warnings matching REGEXP this Emacs showed."
  (if (get-buffer "*Warnings*")
      (with-current-buffer "*Warnings*"
        (how-many regexp (point-min) (point-max)))
    0))

(defmacro meta-log-federation-damage-test-shared (&rest body)
  "Run BODY with federation on and a canvas shared with a peer.
The canvas is `file', shared as `url'; the peer is `bob'.  Also
binds `me' (this peer's id), `name' (the share's name) and `bob-file'
\(Bob's copy)."
  (declare (indent 0) (debug t))
  `(meta-log-federation-test-with-federation
     (let* ((file (meta-log-federation-test-canvas (meta-log-federation-test-peer-dir "own")))
            (name (file-name-nondirectory file))
            (me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
            (bob (meta-log-federation-test-start-peer "bob"))
            (url nil)
            (bob-file nil))
       (should (meta-log-federation-wait-until
                (lambda () (meta-log-federation-peer (process-get bob 'peer-id))) 20))
       (setq url (meta-log-federation-share-canvasl file)
             bob-file (meta-log-federation-test-peer-file bob me name))
       (should (meta-log-federation-test-wait-converged (list file bob-file) 20))
       ;; Bob reports the file after its share is recorded: wait for that.
       (should (meta-log-federation-wait-until
                (lambda () (meta-log-federation-test-peer-line
                            bob (format "UPDATED %s t" (regexp-quote url))))
                10))
       ,@body)))

(ert-deftest damage::a-peer-with-a-damaged-merge-state-keeps-its-edits-and-gets-the-others ()
  (meta-log-federation-damage-test-shared
    (let ((state (meta-log-federation-damage-test-state-file (process-get bob 'dir) me name)))
      (should (file-exists-p state))
      ;; Bob goes down and edits his copy meanwhile; his merge state is damaged.
      (signal-process bob 'SIGKILL)
      (meta-log-federation-wait-until (lambda () (not (process-live-p bob))) 5)
      (meta-log-federation-damage-test-replace bob-file "\"text\":\"beta\"" "\"text\":\"beta edited\"")
      (with-temp-file state (insert "this is not a merge state"))
      ;; This Emacs edits another entry while Bob is away.
      (meta-log-federation-damage-test-replace file "\"text\":\"alpha\"" "\"text\":\"alpha edited\"")
      (meta-log-federation--sync-run-actions
       (meta-log-federation--sync-file-changed file))
      (let ((bob2 (meta-log-federation-test-restart-peer bob)))
        (should (meta-log-federation-wait-until
                 (lambda () (meta-log-federation-damage-test-both-edits (list file bob-file)))
                 40))
        ;; The damaged state was kept aside, and the warning says where, once.
        (let ((kept (meta-log-federation-damage-test-kept state)))
          (should (= 1 (length kept)))
          (should (equal "this is not a merge state"
                         (meta-log-federation-test-file-string (car kept))))
          (should (= 1 (meta-log-federation-damage-test-peer-warnings
                        bob2 (regexp-quote (car kept))))))
        (should (= 1 (meta-log-federation-damage-test-peer-warnings bob2 "merge state")))))))

(ert-deftest damage::a-missing-merge-state-of-the-origin-loses-no-edit-on-either-side ()
  (meta-log-federation-damage-test-shared
    (let ((state (meta-log-federation-damage-test-state-file dir me name))
          (warnings-before (meta-log-federation-damage-test-own-warnings "was missing")))
      ;; Both quit; both files are edited while they are down; this
      ;; Emacs' merge state disappears.
      (signal-process bob 'SIGKILL)
      (meta-log-federation-shutdown)
      (meta-log-federation-damage-test-replace bob-file "\"text\":\"beta\"" "\"text\":\"beta edited\"")
      (meta-log-federation-damage-test-replace file "\"text\":\"alpha\"" "\"text\":\"alpha edited\"")
      (delete-file state)
      (should (eq t (meta-log-federation-init (expand-file-name "blackboard.org" dir)
                                              (meta-log-federation-test-broker-url))))
      (should (meta-log-federation-wait-until #'meta-log-federation-connected-p 10))
      (should (= (1+ warnings-before)
                 (meta-log-federation-damage-test-own-warnings "was missing")))
      ;; Nothing is written over the file before a peer answers.
      (should (string-search "alpha edited" (meta-log-federation-test-file-string file)))
      (should (eq 'rebuilding
                  (plist-get (car (car (meta-log-federation--sync-status))) :state)))
      (meta-log-federation-test-restart-peer bob)
      (should (meta-log-federation-wait-until
               (lambda () (meta-log-federation-damage-test-both-edits (list file bob-file)))
               40))
      (should (eq 'rebuilt (plist-get (car (car (meta-log-federation--sync-status))) :state)))
      (should (= (1+ warnings-before)
                 (meta-log-federation-damage-test-own-warnings "was missing"))))))

(ert-deftest damage::a-damaged-list-of-shares-is-rebuilt-and-sync-goes-on ()
  (meta-log-federation-damage-test-shared
    (let* ((bob-dir (process-get bob 'dir))
           (manifest (expand-file-name "sync-state/shares.json" bob-dir)))
      (should (file-exists-p manifest))
      (signal-process bob 'SIGKILL)
      (meta-log-federation-wait-until (lambda () (not (process-live-p bob))) 5)
      (with-temp-file manifest (insert "{\"v\":1,\"shares\":[{\"sha"))
      (delete-file (concat manifest ".bak"))
      (meta-log-federation-damage-test-replace bob-file "\"text\":\"beta\"" "\"text\":\"beta edited\"")
      ;; This Emacs edits while Bob is away.
      (meta-log-federation-damage-test-replace file "\"text\":\"alpha\"" "\"text\":\"alpha edited\"")
      (meta-log-federation--sync-run-actions (meta-log-federation--sync-file-changed file))
      (let ((bob2 (meta-log-federation-test-restart-peer bob)))
        (should (meta-log-federation-wait-until
                 (lambda () (meta-log-federation-damage-test-both-edits (list file bob-file)))
                 40))
        (let ((kept (meta-log-federation-damage-test-kept manifest)))
          (should (= 1 (length kept)))
          (should (= 1 (meta-log-federation-damage-test-peer-warnings
                        bob2 (concat "list of shared files .*" (regexp-quote (car kept)))))))
        ;; And Bob's edits keep flowing.
        (meta-log-federation-send-peer-message
         (process-get bob2 'peer-id) (format "edit:%s|e1|label|\"after the repair\"" url))
        (should (meta-log-federation-wait-until
                 (lambda () (string-search "after the repair"
                                           (meta-log-federation-test-file-string file)))
                 20))))))

(defun meta-log-federation-damage-test-fill (dir)
  "Fill the file system of DIR with DIR/filler."
  (call-process "dd" nil nil nil "if=/dev/zero"
                (concat "of=" (expand-file-name "filler" dir)) "bs=4k"))

(ert-deftest damage::a-full-disk-keeps-the-old-file-warns-and-the-retry-writes-it ()
  (unless (zerop (user-uid))
    (ert-skip "mounting a tmpfs needs root"))
  (let ((mnt (make-temp-file "meta-log-tmpfs-" t)))
    (unless (zerop (call-process "mount" nil nil nil "-t" "tmpfs" "-o" "size=512k" "tmpfs" mnt))
      (delete-directory mnt)
      (ert-skip "cannot mount a tmpfs here"))
    (unwind-protect
        (let ((failed nil) (recovered nil)
              (meta-log-federation-sync-retry-initial-delay 0.5)
              (meta-log-federation-sync-retry-max-delay 1))
          (meta-log-federation-test-with-federation
            (let* ((meta-log-federation-sync-write-failed-functions
                    (list (lambda (url file message attempt)
                            (push (list url file message attempt) failed))))
                   (meta-log-federation-sync-write-recovered-functions
                    (list (lambda (url) (push url recovered))))
                   (file (meta-log-federation-test-canvas mnt))
                   (bob (meta-log-federation-test-start-peer "bob"))
                   (url nil))
              (should (meta-log-federation-wait-until
                       (lambda () (meta-log-federation-peer (process-get bob 'peer-id))) 20))
              (setq url (meta-log-federation-share-canvasl file))
              (let ((bob-file (meta-log-federation-test-peer-file
                               bob (plist-get (meta-log-federation-get-local-peer-identity)
                                              :peer-id)
                               (file-name-nondirectory file))))
                (should (meta-log-federation-test-wait-converged (list file bob-file) 20))
                (let ((before (meta-log-federation-test-file-string file)))
                  (meta-log-federation-damage-test-fill mnt)
                  ;; Bob edits; this Emacs cannot write the file.
                  (meta-log-federation-send-peer-message
                   (process-get bob 'peer-id) (format "edit:%s|b|text|\"written later\"" url))
                  (should (meta-log-federation-wait-until (lambda () failed) 20))
                  (pcase-let ((`(,f-url ,f-file ,message ,attempt) (car (last failed))))
                    (should (equal f-url url))
                    (should (equal (file-truename f-file) (file-truename file)))
                    (should (string-search "No space left" message))
                    (should (= attempt 1)))
                  (should (= 1 (meta-log-federation-damage-test-own-warnings
                                (concat (regexp-quote url) ": cannot write"))))
                  (should (equal (meta-log-federation-test-file-string file) before))
                  (should (plist-get (car (car (meta-log-federation--sync-status))) :pending-write))
                  (should (string-match-p "Sync!" (meta-log-federation-sync-mode-line-problem)))
                  ;; Retries fail while the disk is full, and keep the old file.
                  (should (meta-log-federation-wait-until
                           (lambda () (cl-some (lambda (f) (>= (nth 3 f) 2)) failed)) 10))
                  (should (equal (meta-log-federation-test-file-string file) before))
                  ;; Space returns: the file is written with no further edit from Bob.
                  (delete-file (expand-file-name "filler" mnt))
                  (should (meta-log-federation-wait-until
                           (lambda () (string-search
                                       "written later"
                                       (meta-log-federation-test-file-string file)))
                           20))
                  (should (meta-log-federation-wait-until (lambda () recovered) 5))
                  (should (equal recovered (list url)))
                  (should (equal (meta-log-federation-sync-mode-line-problem) ""))
                  (should-not (plist-get (car (car (meta-log-federation--sync-status)))
                                         :pending-write))
                  ;; One warning for the whole episode, not one per retry.
                  (should (= 1 (meta-log-federation-damage-test-own-warnings
                                (concat (regexp-quote url) ": cannot write")))))))))
      (call-process "umount" nil nil nil "-l" mnt)
      (delete-directory mnt t))))

(ert-deftest damage::the-status-buffer-shows-each-share ()
  (meta-log-federation-test-with-federation
    (let* ((file (meta-log-federation-test-canvas (meta-log-federation-test-peer-dir "own")))
           (url (meta-log-federation-share-canvasl file))
           (buffer (meta-log-federation-sync-status)))
      (with-current-buffer buffer
        (should (derived-mode-p 'meta-log-federation-sync-status-mode))
        (should (string-search url (buffer-string)))
        (should (string-search "state:         healthy" (buffer-string)))
        (should (string-search "pending write: none" (buffer-string))))
      (kill-buffer buffer))))

(provide 'meta-log-federation-damage-test)
;;; meta-log-federation-damage-test.el ends here
