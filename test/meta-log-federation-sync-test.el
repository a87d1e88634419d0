;;; meta-log-federation-sync-test.el --- CanvasL sync across three Emacs processes  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; This Emacs shares a canvas; two batch Emacs peers receive it, edit it
;; concurrently (one of them while the other is down), restart, and all
;; end with byte-identical files holding every edit.

;;; Code:

(require 'meta-log-federation-federation-test)
(require 'json)
(require 'cl-lib)

(defun meta-log-federation-test-canvas (dir)
  "Write a small canvas in DIR; return its file name."
  (let ((file (expand-file-name (format "board-%d.canvasl" (random 1000000)) dir)))
    (with-temp-file file
      (insert "@version 1.0\n@schema canvasl\n"
              "{\"id\":\"a\",\"type\":\"text\",\"text\":\"alpha\",\"x\":0}\n"
              "{\"id\":\"b\",\"type\":\"text\",\"text\":\"beta\",\"x\":10}\n"
              "{\"id\":\"a\",\"type\":\"text\",\"text\":\"second a\",\"x\":20}\n"
              "{\"id\":\"e1\",\"fromNode\":\"a\",\"toNode\":\"b\"}\n"))
    file))

(defun meta-log-federation-test-peer-file (proc origin name)
  "Return the synced copy of share ORIGIN/NAME in peer PROC's sync directory."
  (expand-file-name (format "sync/%s/%s" origin name) (process-get proc 'dir)))

(defun meta-log-federation-test-edit (file id field value &optional no-save)
  "Set FIELD of entry ID in FILE to VALUE (JSON text) through its buffer and save.
With NO-SAVE, leave the edit unsaved.  A save returns once the file
is written (by the sync worker, for a shared file)."
  (with-current-buffer (find-file-noselect file)
    ;; A person sees the file before typing (see `test-peer-edit-entry').
    (meta-log-federation-wait-until #'always 5)
    (goto-char (point-min))
    (re-search-forward (format "\"id\":\"%s\"" (regexp-quote id)))
    (let ((entry (json-parse-string
                  (buffer-substring (line-beginning-position) (line-end-position))
                  :object-type 'alist)))
      (setf (alist-get (intern field) entry) (json-parse-string value))
      (delete-region (line-beginning-position) (line-end-position))
      (insert (json-serialize entry)))
    (unless no-save
      (save-buffer)
      ;; The sync worker writes the file: wait until it has (as a script must).
      (meta-log-federation-wait-until (lambda () (null meta-log-federation--save-pending)) 30))))

(defun meta-log-federation-test-converged (files)
  "Return non-nil when FILES all exist and are byte-identical."
  (let ((texts (mapcar #'meta-log-federation-test-file-string files)))
    (and (car texts) (cl-every (lambda (s) (equal s (car texts))) texts))))

(defun meta-log-federation-test-wait-converged (files timeout)
  "Wait up to TIMEOUT seconds until FILES are all equal; return non-nil if so.
On a timeout, print what each file holds (the lines that differ from
the first file's), this Emacs' session figures and the peers' last
output: a failure in CI leaves only the log."
  (or (meta-log-federation-wait-until
       (lambda () (meta-log-federation-test-converged files)) timeout)
      (let ((first (split-string (or (meta-log-federation-test-file-string (car files)) "") "\n")))
        (message "---- %s did not converge in %s s" (length files) timeout)
        (dolist (f files)
          (let ((lines (split-string (or (meta-log-federation-test-file-string f) "") "\n")))
            (message "---- %s: %d lines; not in the first file: %S; missing from it: %S"
                     f (length lines)
                     (cl-set-difference lines first :test #'equal)
                     (cl-set-difference first lines :test #'equal))))
        (when (fboundp 'meta-log-federation--session-stats)
          (message "---- this Emacs' session: %S" (meta-log-federation--session-stats)))
        (meta-log-federation-test-report-peers)
        nil)))

(ert-deftest sync::three-peers-converge-after-concurrent-edits-and-an-outage ()
  (meta-log-federation-test-with-federation
    (let* ((sync-dir (meta-log-federation-test-peer-dir "self-sync"))
           (meta-log-federation-sync-directory sync-dir)
           (file (meta-log-federation-test-canvas (meta-log-federation-test-peer-dir "own")))
           (name (file-name-nondirectory file))
           (me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
           (bob (meta-log-federation-test-start-peer "bob"))
           (carol (meta-log-federation-test-start-peer "carol"))
           (url nil))
      (should (meta-log-federation-wait-until
               (lambda () (and (meta-log-federation-peer (process-get bob 'peer-id))
                               (meta-log-federation-peer (process-get carol 'peer-id))))
               20))
      (setq url (meta-log-federation-share-canvasl file))
      (should (equal url (format "canvasl://%s/%s" me name)))
      (should (member file (meta-log-federation-shared-canvasl-files)))
      (let ((bob-file (meta-log-federation-test-peer-file bob me name))
            (carol-file (meta-log-federation-test-peer-file carol me name)))
        ;; Both receive the file, byte for byte.
        (should (meta-log-federation-test-wait-converged (list file bob-file carol-file) 20))
        ;; Carol goes down; Alice (this Emacs) and Bob edit different entries at once.
        (signal-process carol 'SIGKILL)
        (meta-log-federation-send-peer-message
         (process-get bob 'peer-id) (format "edit:%s|b|text|\"bob was here\"" url))
        (meta-log-federation-test-edit file "e1" "label" "\"alice's edge\"")
        (should (meta-log-federation-wait-until
                 (lambda () (and (meta-log-federation-test-converged (list file bob-file))
                                 (string-search "bob was here"
                                                (meta-log-federation-test-file-string file))
                                 (string-search "alice's edge"
                                                (meta-log-federation-test-file-string file))))
                 20))
        ;; The buffer visiting the file shows Bob's edit too (it had no unsaved edits).
        (with-current-buffer (find-buffer-visiting file)
          (should (string-search "bob was here" (buffer-string)))
          (should-not (buffer-modified-p)))
        ;; Carol comes back with her state and catches up.
        (should-not (string-search "bob was here"
                                   (meta-log-federation-test-file-string carol-file)))
        (let ((carol2 (meta-log-federation-test-restart-peer carol)))
          (should (meta-log-federation-test-wait-converged (list file bob-file carol-file) 30))
          (let ((text (meta-log-federation-test-file-string carol-file)))
            (should (string-search "bob was here" text))
            (should (string-search "alice's edge" text))
            ;; Nothing duplicated: still two entries with id "a", one "b", one "e1".
            (should (= 2 (cl-count-if (lambda (l) (string-search "\"id\":\"a\"" l))
                                      (split-string text "\n"))))
            (should (= 1 (cl-count-if (lambda (l) (string-search "\"id\":\"b\"" l))
                                      (split-string text "\n")))))
          ;; Her new session outranks the will the broker published for the
          ;; killed one, even when she restarted within the same second.
          (should (meta-log-federation-wait-until
                   (lambda () (eq 'online (meta-log-federation-test-status
                                           (process-get carol2 'peer-id))))
                   20))
          (should (process-live-p carol2)))
        (kill-buffer (find-buffer-visiting file))))))

(ert-deftest sync::same-field-conflict-resolves-the-same-everywhere-and-is-listed ()
  (meta-log-federation-test-with-federation
    (let* ((meta-log-federation-sync-directory (meta-log-federation-test-peer-dir "self-sync"))
           (file (meta-log-federation-test-canvas (meta-log-federation-test-peer-dir "own")))
           (name (file-name-nondirectory file))
           (me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
           (bob (meta-log-federation-test-start-peer "bob"))
           (bob-id (process-get bob 'peer-id))
           (url nil))
      (should (meta-log-federation-wait-until (lambda () (meta-log-federation-peer bob-id)) 20))
      (setq url (meta-log-federation-share-canvasl file))
      (let ((bob-file (meta-log-federation-test-peer-file bob me name)))
        (should (meta-log-federation-test-wait-converged (list file bob-file) 20))
        ;; Both write the same field before seeing the other's write.  This
        ;; Emacs edits first, without saving: its buffer holds the file.
        ;; Bob then edits and saves; his change is merged here in the
        ;; background (the module's session) but, the buffer having unsaved
        ;; edits, neither the file nor the buffer changes; the hook says the
        ;; change waits.  Our save then merges both writes: a conflict.
        (let ((held nil))
          (let ((meta-log-federation-canvasl-held-functions
                 (list (lambda (held-file _url) (setq held held-file)))))
            (meta-log-federation-test-edit file "a" "x" "222" 'no-save)
            (meta-log-federation-send-peer-message bob-id (format "edit:%s|a|x|111" url))
            (should (meta-log-federation-wait-until (lambda () held) 20))
            (should (file-equal-p held file))
            (should-not (string-search "111" (meta-log-federation-test-file-string file)))
            (with-current-buffer (find-buffer-visiting file)
              (should-not (string-search "111" (buffer-string)))
              (save-buffer))))
        (should (meta-log-federation-wait-until
                 (lambda () (and (meta-log-federation-test-converged (list file bob-file))
                                 (meta-log-federation-canvasl-conflicts file)))
                 20))
        (let ((c (car (meta-log-federation-canvasl-conflicts file))))
          (should (equal (plist-get c :field) "x"))
          (should (equal (plist-get c :id) "a"))
          (should (member (plist-get c :winner) '("111" "222")))
          (should (equal (plist-get c :losers)
                         (list (if (equal (plist-get c :winner) "111") "222" "111")))))
        ;; The share status counts the conflict and sizes the merged file;
        ;; the brief listing leaves the sizes out.
        (let ((of-url (lambda (shares)
                        (cl-find url shares :key (lambda (s) (plist-get s :url))
                                 :test #'equal)))
              (text (meta-log-federation-test-file-string file)))
          (let ((brief (funcall of-url (meta-log-federation-shared-canvasl-files 'brief))))
            (should (file-equal-p (plist-get brief :path) file))
            (should (plist-get brief :local))
            (should-not (plist-member brief :lines))
            (should-not (plist-member brief :conflicts)))
          (let ((details (funcall of-url (meta-log-federation-shared-canvasl-files t))))
            (should (file-equal-p (plist-get details :path) file))
            (should (= 1 (plist-get details :conflicts)))
            (should (= (string-bytes text) (plist-get details :bytes)))
            (should (= (cl-count ?\n text) (plist-get details :lines)))))
        (kill-buffer (find-buffer-visiting file))))))

(ert-deftest sync::a-peer-joining-later-receives-the-existing-shares ()
  (meta-log-federation-test-with-federation
    (let* ((file (meta-log-federation-test-canvas (meta-log-federation-test-peer-dir "own")))
           (me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
           (url (meta-log-federation-share-canvasl file))
           (dave (meta-log-federation-test-start-peer "dave")))
      (should (string-prefix-p "canvasl://" url))
      (should (meta-log-federation-wait-until
               (lambda () (meta-log-federation-test-converged
                           (list file (meta-log-federation-test-peer-file
                                       dave me (file-name-nondirectory file)))))
               20))
      ;; The file is written before the peer reports it: wait for the report.
      (should (meta-log-federation-wait-until
               (lambda () (meta-log-federation-test-peer-line
                           dave (format "UPDATED %s t" (regexp-quote url))))
               10)))))

(ert-deftest sync::hostile-share-names-are-refused-and-write-nothing ()
  (meta-log-federation-test-with-federation
    (let* ((sync-dir (meta-log-federation-test-peer-dir "self-sync"))
           (meta-log-federation-sync-directory sync-dir)
           (mallory (meta-log-federation-identity-from-mnemonic
                     (meta-log-federation-mnemonic-generate)))
           (m-id (meta-log-federation-identity-peer-id mallory))
           (refused nil)
           (meta-log-federation-sync-refused-functions
            (list (lambda (reason _detail) (push reason refused)))))
      (meta-log-federation--sync-stop)
      (meta-log-federation--sync-start)
      (dolist (name (list "../../evil.canvasl" "/etc/evil.canvasl" "a\nb.canvasl"
                          "notes.doc" ".."))
        (meta-log-federation-mqtt-publish
         "canvasl/sync"
         (meta-log-federation-sign-event
          mallory 4771
          (json-encode `((v . 1) (share . ,(format "canvasl://%s/%s" m-id name))
                         (op . "change") (full . t) (data . "AAAA")))
          `(("v" ,(meta-log-federation--protocol-version)) ("t" "sync")))
         1))
      (should (meta-log-federation-wait-until (lambda () (>= (length refused) 5)) 10))
      (should (cl-every (lambda (r) (or (string-prefix-p "name-" r) (equal r "bad-share")))
                        refused))
      (should (>= (apply #'+ (mapcar #'cdr (meta-log-federation-sync-refusals))) 5))
      (should-not (file-exists-p (expand-file-name "../evil.canvasl" sync-dir)))
      (should-not (file-exists-p "/etc/evil.canvasl"))
      (should (null (directory-files sync-dir nil "\\`[^.]"))))))

(provide 'meta-log-federation-sync-test)
;;; meta-log-federation-sync-test.el ends here
