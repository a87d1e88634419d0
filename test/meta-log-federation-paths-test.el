;;; meta-log-federation-paths-test.el --- The paths a person relies on, end to end  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; This Emacs and batch Emacs peers (test/meta-log-federation-test-peer.el)
;; on the run's private broker:
;; - a shared file changed by another program reaches the other peer;
;; - unsaved edits in a buffer survive a remote change and are merged
;;   when the buffer is saved;
;; - a 100,000-entry canvas is shared to another Emacs and edited back;
;; - the blackboard's timer updates the blackboard buffer while the
;;   person types in it, and never touches what is typed.
;;
;; File notifications in batch Emacs: Emacs queues them as input events
;; (special events, `file-notify-handle-event' in `special-event-map'),
;; and only reading input runs them.  The command loop of an interactive
;; Emacs reads input all the time; a batch Emacs waiting in
;; `accept-process-output' or `sleep-for' never does, so its watches
;; never fire.  `meta-log-federation-test-wait-reading-input' waits the
;; way the command loop does: it reads input events (with a timeout) as
;; well as process output and timers.

;;; Code:

(require 'meta-log-federation-sync-test)
(require 'json)

(defun meta-log-federation-test-wait-reading-input (predicate timeout)
  "Wait up to TIMEOUT seconds for PREDICATE, reading input events meanwhile.
Like `meta-log-federation-wait-until', and also runs special events
such as file notifications, which a batch Emacs only runs when it
reads input.  Return PREDICATE's last value."
  (let ((deadline (+ (float-time) timeout))
        result)
    (while (and (not (setq result (funcall predicate)))
                (< (float-time) deadline))
      (meta-log-federation-wait-until #'ignore 0.01)
      ;; Returns nil after the timeout; special events run inside it.
      (read-event nil nil 0.01))
    result))

(defun meta-log-federation-test-share-with-bob (file)
  "Share FILE with a new peer Bob; return (BOB . BOB-FILE) once Bob has it."
  (let* ((me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
         (bob (meta-log-federation-test-start-peer "bob")))
    (should (meta-log-federation-wait-until
             (lambda () (meta-log-federation-peer (process-get bob 'peer-id))) 20))
    (meta-log-federation-share-canvasl file)
    (let ((bob-file (meta-log-federation-test-peer-file bob me (file-name-nondirectory file))))
      (should (meta-log-federation-test-wait-converged (list file bob-file) 30))
      (cons bob bob-file))))

(ert-deftest paths::a-shared-file-edited-by-another-program-reaches-the-other-peer ()
  (meta-log-federation-test-with-federation
    (let* ((meta-log-federation-sync-watch-files t)
           (file (meta-log-federation-test-canvas (meta-log-federation-test-peer-dir "own")))
           (bob-file (cdr (meta-log-federation-test-share-with-bob file))))
      ;; sed -i writes a new file and renames it over the old one.
      (should (zerop (call-process "sed" nil nil nil "-i" "s/\"beta\"/\"beta, edited by sed\"/"
                                   file)))
      (should (meta-log-federation-test-wait-reading-input
               (lambda () (meta-log-federation-test-converged (list file bob-file))) 20))
      (should (string-search "beta, edited by sed"
                             (meta-log-federation-test-file-string bob-file)))
      ;; A shell appends a line: the file is changed in place.
      (should (zerop (call-process "sh" nil nil nil "-c"
                                   "printf '%s\\n' \"$1\" >> \"$2\"" "sh"
                                   "{\"id\":\"c\",\"type\":\"text\",\"text\":\"appended by sh\"}"
                                   file)))
      (should (meta-log-federation-test-wait-reading-input
               (lambda () (meta-log-federation-test-converged (list file bob-file))) 20))
      (let ((text (meta-log-federation-test-file-string bob-file)))
        (should (string-search "appended by sh" text))
        (should (string-search "beta, edited by sed" text))))))

(ert-deftest paths::unsaved-edits-survive-a-remote-change-and-are-merged-at-save ()
  (meta-log-federation-test-with-federation
    (let* ((file (meta-log-federation-test-canvas (meta-log-federation-test-peer-dir "own")))
           (shared (meta-log-federation-test-share-with-bob file))
           (bob (car shared))
           (bob-file (cdr shared))
           (url (format "canvasl://%s/%s"
                        (plist-get (meta-log-federation-get-local-peer-identity) :peer-id)
                        (file-name-nondirectory file)))
           (answers nil)
           (meta-log-federation-peer-message-functions
            (list (lambda (_from text) (push text answers))))
           (buffer (find-file-noselect file)))
      (unwind-protect
          (with-current-buffer buffer
            ;; The person adds a label to the edge e1 and does not save.
            (goto-char (point-min))
            (re-search-forward "\"id\":\"e1\"")
            (end-of-line)
            (backward-char)
            (insert ",\"label\":\"typed, not saved\"")
            (should (buffer-modified-p))
            (let ((typed-at (point)))
              ;; Meanwhile Bob changes another entry and saves.  He answers
              ;; after publishing his change, so once the answer is here his
              ;; change has been handled here too.
              (meta-log-federation-send-peer-message
               (process-get bob 'peer-id) (format "edit:%s|b|text|\"bob was here\"" url))
              (should (meta-log-federation-wait-until
                       (lambda () (member "edited:b" answers)) 20))
              ;; The buffer keeps the unsaved edit and point; the file on
              ;; disk is not written under it.
              (should (buffer-modified-p))
              (should (= (point) typed-at))
              (should (string-search "typed, not saved" (buffer-string)))
              (should-not (string-search "bob was here" (buffer-string)))
              (should-not (string-search "bob was here"
                                         (meta-log-federation-test-file-string file))))
            ;; Saving merges both edits, here and at Bob's.
            (save-buffer)
            (should (meta-log-federation-wait-until
                     (lambda () (and (meta-log-federation-test-converged (list file bob-file))
                                     (string-search "bob was here"
                                                    (meta-log-federation-test-file-string file))))
                     20))
            (let ((text (meta-log-federation-test-file-string bob-file)))
              (should (string-search "typed, not saved" text))
              (should (string-search "bob was here" text)))
            ;; The buffer shows the merged file and has nothing left unsaved.
            (should (meta-log-federation-wait-until
                     (lambda () (string-search "bob was here" (buffer-string))) 10))
            (should (string-search "typed, not saved" (buffer-string)))
            (should-not (buffer-modified-p)))
        (with-current-buffer buffer (set-buffer-modified-p nil))
        (kill-buffer buffer)))))

(defun meta-log-federation-test-large-canvas (file n)
  "Write a canvas of N entries (text nodes and edges) to FILE."
  (with-temp-file file
    (insert "@version 1.0\n@schema canvasl\n")
    (dotimes (i n)
      (insert (if (zerop (% i 4))
                  (format "{\"id\":\"e%d\",\"type\":\"edge\",\"fromNode\":\"n%d\",\"toNode\":\"n%d\"}\n"
                          i i (1+ i))
                (format "{\"id\":\"n%d\",\"type\":\"text\",\"text\":\"node %d\",\"x\":%d,\"y\":%d}\n"
                        i i (* 10 (% i 100)) (* 10 (/ i 100))))))))

(ert-deftest paths::a-100000-entry-canvas-is-shared-to-another-emacs-and-edited-back ()
  (meta-log-federation-test-with-federation
    (let* ((large-file-warning-threshold nil)
           (file (expand-file-name "large-100k.canvasl" (meta-log-federation-test-peer-dir "own")))
           (url nil)
           (updated nil)
           (meta-log-federation-canvasl-updated-functions
            (list (lambda (_file url created) (push (cons url created) updated)))))
      (meta-log-federation-test-large-canvas file 100000)
      (should (> (file-attribute-size (file-attributes file)) 5000000))
      (let* ((shared (meta-log-federation-test-share-with-bob file))
             (bob (car shared))
             (bob-file (cdr shared)))
        (setq url (format "canvasl://%s/%s"
                          (plist-get (meta-log-federation-get-local-peer-identity) :peer-id)
                          (file-name-nondirectory file)))
        ;; Bob received it whole (`meta-log-federation-test-share-with-bob'
        ;; compared the bytes) and reported a new share.
        (should (meta-log-federation-wait-until
                 (lambda () (meta-log-federation-test-peer-line
                             bob (format "UPDATED %s t" (regexp-quote url))))
                 10))
        ;; Bob edits one entry deep in the file: it comes back here.
        (meta-log-federation-send-peer-message
         (process-get bob 'peer-id) (format "edit:%s|n50001|text|\"edited by bob\"" url))
        (should (meta-log-federation-wait-until
                 (lambda () (assoc url updated)) 60))
        (should (meta-log-federation-test-wait-converged (list file bob-file) 30))
        (with-temp-buffer
          (insert-file-contents file)
          (should (re-search-forward "^{\"id\":\"n50001\".*\"edited by bob\"" nil t))
          (should (= 100002 (count-lines (point-min) (point-max)))))))))

(ert-deftest paths::the-blackboard-timer-never-clobbers-typing ()
  (meta-log-federation-test-with-federation
    (let* ((meta-log-federation-blackboard-delay 0.05)
           (file meta-log-federation--blackboard)
           (buffer (find-file-noselect file))
           (typed "")
           (text "Notes typed while peers come and go. ")
           (bob nil) (bob-id nil))
      (unwind-protect
          (with-current-buffer buffer
            ;; The person starts a line under the Peers heading, where the
            ;; timer adds peers.
            (goto-char (point-min))
            (re-search-forward "^\\*\\* Peers.*\n")
            (let ((start (point-marker)))
              (cl-flet ((type-until (done)
                          ;; One character at a time, the timer and the
                          ;; network running between keystrokes, until DONE.
                          (let ((i 0) (deadline (+ (float-time) 30)))
                            (while (and (not (funcall done)) (< (float-time) deadline))
                              (let ((c (aref text (% i (length text)))))
                                (insert c)
                                (setq typed (concat typed (string c))
                                      i (1+ i)))
                              (meta-log-federation-wait-until #'ignore 0.02))
                            (should (funcall done))))
                        (typed-intact ()
                          (should (equal (buffer-substring start (point)) typed))
                          (should (buffer-modified-p))))
                (type-until (lambda () (> (length typed) 5)))
                ;; Bob comes online: the timer writes him into this buffer.
                (setq bob (meta-log-federation-test-start-peer "bob")
                      bob-id (process-get bob 'peer-id))
                (type-until (lambda ()
                              (string-search (format "*** Peer: %s" bob-id) (buffer-string))))
                (typed-intact)
                ;; Bob leaves: the timer changes his status while typing goes on.
                (meta-log-federation-send-peer-message bob-id "quit")
                (type-until
                 (lambda ()
                   (save-excursion
                     (goto-char (point-min))
                     (and (search-forward (format "*** Peer: %s" bob-id) nil t)
                          (re-search-forward "^:PEER_STATUS: offline$" nil t)))))
                (typed-intact)
                ;; What was typed never reached the file behind the person's back.
                (should-not (string-search (substring typed 0 5)
                                           (meta-log-federation-test-file-string file))))))
        (with-current-buffer buffer (set-buffer-modified-p nil))
        (kill-buffer buffer)))))

(provide 'meta-log-federation-paths-test)
;;; meta-log-federation-paths-test.el ends here
