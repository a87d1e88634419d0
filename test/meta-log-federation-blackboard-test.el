;;; meta-log-federation-blackboard-test.el --- The shared Org blackboard across Emacs processes  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; This Emacs and two batch Emacs peers on a real broker:
;; - the blackboard, shared, edited concurrently on two peers, converges
;;   on all three with both edits and no conflict;
;; - peer records stay local: their updates publish no sync change
;;   (counted by a plain mosquitto_sub over a quiet interval) and make no
;;   conflict.
;; Asking a peer for a blackboard not held yet
;; (`meta-log-federation-sync-blackboard' PEER-ID) is tested in Rust,
;; src/sync/tests_blackboard.rs: between live Emacsen the origin's offer
;; always delivers it first.

;;; Code:

(require 'meta-log-federation-federation-test)
(require 'meta-log-federation-sync-test)

(defvar meta-log-federation-bb-test-evil nil
  "Set by a file-local variable a peer wrote, if it ever took effect.")

(defun meta-log-federation-bb-test-start-peer (name &rest forms)
  "Start a test peer NAME that also runs FORMS and knows the blackboard commands.
See test/meta-log-federation-blackboard-peer.el for the commands."
  (let* ((orig (symbol-function 'meta-log-federation-test-emacs-command))
         (extension (expand-file-name
                     "meta-log-federation-blackboard-peer.el"
                     (file-name-directory
                      (locate-library "meta-log-federation-test-helpers"))))
         (extra (append forms (list `(load ,extension nil t)))))
    (cl-letf (((symbol-function 'meta-log-federation-test-emacs-command)
               (lambda (&rest fs) (apply orig (append fs extra)))))
      (meta-log-federation-test-start-peer name))))

(defun meta-log-federation-bb-test-wait-line (proc regexp)
  "Wait for REGEXP in PROC's report lines, reading only PROC's output.
`accept-process-output' with JUST-THIS-ONE an integer runs neither
other processes' filters nor timers, so nothing reaches this Emacs
meanwhile.  Return the match, or nil after 20 seconds."
  (let ((deadline (+ (float-time) 20)))
    (while (and (< (float-time) deadline)
                (not (meta-log-federation-test-peer-line proc regexp)))
      (accept-process-output proc 0.05 nil 1))
    (meta-log-federation-test-peer-line proc regexp)))

(defun meta-log-federation-bb-test-write-ideas (file)
  "Add an Ideas heading to the blackboard FILE through its buffer.
As a person would."
  (with-current-buffer (find-file-noselect file)
    (goto-char (point-max))
    (insert "** Ideas\n- one\n- two\n- three\n")
    (save-buffer)))

(defun meta-log-federation-bb-test-edit (file old new)
  "Replace the line OLD by NEW in FILE through its buffer and save it."
  (with-current-buffer (find-file-noselect file)
    (goto-char (point-min))
    (re-search-forward (concat "^" (regexp-quote old) "$"))
    (replace-match new t t)
    (save-buffer)))

(ert-deftest blackboard::edited-concurrently-on-two-peers-converges-with-both-edits ()
  (meta-log-federation-test-with-federation
    (let* ((meta-log-federation-blackboard-shared nil)
           (me (meta-log-federation--federation-peer-id))
           (bob (meta-log-federation-bb-test-start-peer "bob"))
           (carol (meta-log-federation-bb-test-start-peer "carol"))
           (bob-id (process-get bob 'peer-id))
           (file meta-log-federation--blackboard)
           (side (meta-log-federation--blackboard-side-file file)))
      (should (meta-log-federation-wait-until
               (lambda () (and (meta-log-federation-peer bob-id)
                               (meta-log-federation-peer (process-get carol 'peer-id))))
               20))
      ;; Not shared yet: the records are in the blackboard itself.
      (meta-log-federation-sync-blackboard)
      (should (string-search bob-id (meta-log-federation-test-file-string file)))
      (should-not (file-exists-p side))
      (meta-log-federation-bb-test-write-ideas file)
      (let ((url (meta-log-federation-share-blackboard)))
        (should (equal url (format "canvasl://%s/blackboard.org" me)))
        (should (equal url (meta-log-federation-blackboard-shared-p)))
        ;; The records moved to the side file; the person's text stayed.
        (let ((text (meta-log-federation-test-file-string file)))
          (should-not (string-search bob-id text))
          (should (string-search "** Peers\n" text))
          (should (string-search "- two\n" text)))
        (should (string-search bob-id (meta-log-federation-test-file-string side)))
        (let ((bob-file (meta-log-federation-test-peer-file bob me "blackboard.org"))
              (carol-file (meta-log-federation-test-peer-file carol me "blackboard.org")))
          (should (meta-log-federation-test-wait-converged (list file bob-file carol-file) 20))
          ;; Bob edits one line and saves; only then does this Emacs edit
          ;; another, before Bob's change can be merged here.
          (meta-log-federation-send-peer-message
           bob-id (format "bb-edit:%s|- one|- one, said bob" me))
          (should (meta-log-federation-bb-test-wait-line bob "BB-EDITED - one, said bob"))
          (should-not (string-search "said bob" (meta-log-federation-test-file-string file)))
          (meta-log-federation-bb-test-edit file "- three" "- three, said alice")
          (should (meta-log-federation-wait-until
                   (lambda () (and (meta-log-federation-test-converged
                                    (list file bob-file carol-file))
                                   (string-search "said bob"
                                                  (meta-log-federation-test-file-string file))
                                   (string-search "said alice"
                                                  (meta-log-federation-test-file-string file))))
                   20))
          (let ((text (meta-log-federation-test-file-string carol-file)))
            (should (string-search "** Ideas\n- one, said bob\n- two\n- three, said alice\n" text))
            ;; No peer record travelled.
            (should-not (string-search ":PEER_ID:" text)))
          (should-not (meta-log-federation-canvasl-conflicts file))
          ;; Asking a peer for its blackboard checks the id; Bob shares none.
          (should (equal file (meta-log-federation-sync-blackboard bob-id)))
          (should-not (meta-log-federation-blackboard-file-of bob-id))
          (should-error (meta-log-federation-sync-blackboard "not-a-peer-id")
                        :type 'meta-log-federation-unknown-peer)
          ;; The buffer visiting the blackboard shows Bob's edit (it had no unsaved edits).
          (with-current-buffer (find-buffer-visiting file)
            (should (string-search "said bob" (buffer-string)))
            (should-not (buffer-modified-p))
            (kill-buffer))
          ;; A peer's text sets no variable here when the blackboard is opened,
          ;; even for a user who accepts every file-local variable.
          (meta-log-federation-send-peer-message
           bob-id (format "bb-edit:%s|#+TITLE: Federation Blackboard|%s" me
                          "# -*- eval: (setq meta-log-federation-bb-test-evil t) -*-"))
          (should (meta-log-federation-wait-until
                   (lambda () (string-search "bb-test-evil"
                                             (meta-log-federation-test-file-string file)))
                   20))
          (let ((enable-local-variables :all))
            (meta-log-federation-open-blackboard))
          (unwind-protect
              (should-not meta-log-federation-bb-test-evil)
            (kill-buffer (find-buffer-visiting file))))))))

(ert-deftest blackboard::one-line-written-on-two-peers-has-one-winner-and-the-loser-listed ()
  (meta-log-federation-test-with-federation
    (let* ((me (meta-log-federation--federation-peer-id))
           (bob (meta-log-federation-bb-test-start-peer "bob"))
           (bob-id (process-get bob 'peer-id))
           (file meta-log-federation--blackboard))
      (should (meta-log-federation-wait-until (lambda () (meta-log-federation-peer bob-id)) 20))
      (meta-log-federation-bb-test-write-ideas file)
      (meta-log-federation-share-blackboard)
      (let ((bob-file (meta-log-federation-test-peer-file bob me "blackboard.org")))
        (should (meta-log-federation-test-wait-converged (list file bob-file) 20))
        ;; Both write the line "- two" before seeing the other's write.
        (meta-log-federation-send-peer-message
         bob-id (format "bb-edit:%s|- two|- two, as bob wrote it" me))
        (should (meta-log-federation-bb-test-wait-line bob "BB-EDITED - two, as bob"))
        (meta-log-federation-bb-test-edit file "- two" "- two, as alice wrote it")
        ;; Until both files show the winner: they can be equal for a moment
        ;; before that (a save the worker could not take is written by
        ;; Emacs itself a little later, and then merged again).
        (should (meta-log-federation-wait-until
                 (lambda ()
                   (let ((c (car (meta-log-federation-canvasl-conflicts file))))
                     (and c
                          (meta-log-federation-test-converged (list file bob-file))
                          (string-search (substring (plist-get c :winner) 1 -3)
                                         (meta-log-federation-test-file-string bob-file)))))
                 20))
        (let* ((conflicts (meta-log-federation-canvasl-conflicts file))
               (c (car conflicts))
               (alice "\"- two, as alice wrote it\\n\"")
               (bob-line "\"- two, as bob wrote it\\n\""))
          (should (= 1 (length conflicts)))
          (should-not (plist-get c :field))
          (should (member (plist-get c :winner) (list alice bob-line)))
          (should (equal (plist-get c :losers)
                         (list (if (equal (plist-get c :winner) alice) bob-line alice))))
          ;; The file shows the winner, on both peers.
          (should (string-search (substring (plist-get c :winner) 1 -3)
                                 (meta-log-federation-test-file-string bob-file))))
        (kill-buffer (find-buffer-visiting file))))))

(ert-deftest blackboard::peer-record-updates-publish-no-change-and-make-no-conflict ()
  (let ((meta-log-federation-blackboard-shared t))
    (meta-log-federation-test-with-federation
      (let* ((me (meta-log-federation--federation-peer-id))
             (file meta-log-federation--blackboard)
             (side (meta-log-federation--blackboard-side-file file))
             (sniffed (generate-new-buffer " *mosquitto_sub*"))
             (sub (make-process
                   :name "sniffer" :buffer sniffed :noquery t
                   :command (list "mosquitto_sub" "-h" "127.0.0.1"
                                  "-p" (number-to-string meta-log-federation-test-broker-port)
                                  "-t" "#" "-v")))
             (changes (lambda ()
                        (with-current-buffer sniffed
                          (let ((n 0))
                            (goto-char (point-min))
                            (while (search-forward "\"kind\":4771" nil t) (cl-incf n))
                            n))))
             (shared '(setq meta-log-federation-blackboard-shared t))
             (bob (meta-log-federation-bb-test-start-peer "bob" shared))
             (carol (meta-log-federation-bb-test-start-peer "carol" shared))
             (bob-id (process-get bob 'peer-id))
             (carol-id (process-get carol 'peer-id)))
        (unwind-protect
            (progn
              ;; Shared at start (the option), by every peer.
              (should (equal (meta-log-federation-blackboard-shared-p)
                             (format "canvasl://%s/blackboard.org" me)))
              (should (meta-log-federation-wait-until
                       (lambda () (and (meta-log-federation-blackboard-file-of bob-id)
                                       (meta-log-federation-blackboard-file-of carol-id)
                                       (file-exists-p (meta-log-federation-test-peer-file
                                                       bob me "blackboard.org"))))
                       30))
              ;; Both peers recorded here, in the side file only.
              (should (meta-log-federation-wait-until
                       (lambda () (let ((s (meta-log-federation-test-file-string side)))
                                    (and s (string-search bob-id s) (string-search carol-id s))))
                       20))
              (let ((before (funcall changes))
                    (records (meta-log-federation-test-file-string side)))
                (should (> before 0))   ; the sniffer sees sync changes at all
                ;; Peer records change: Carol leaves and comes back, messages go both ways.
                (meta-log-federation-send-peer-message carol-id "quit")
                (should (meta-log-federation-wait-until
                         (lambda () (not (eq 'online (meta-log-federation-test-status carol-id))))
                         20))
                (let ((carol2 (meta-log-federation-test-restart-peer carol)))
                  (should (meta-log-federation-wait-until
                           (lambda () (eq 'online (meta-log-federation-test-status
                                                   (process-get carol2 'peer-id))))
                           20)))
                (meta-log-federation-send-peer-message bob-id "echo:hello")
                ;; The records' times are in seconds: Carol can leave and come back
                ;; within the second they were written, and her record would read the
                ;; same.  The update below is made in a later second.
                (meta-log-federation-wait-until
                 (lambda () (not (string-search (meta-log-federation--iso-time nil) records)))
                 2)
                (meta-log-federation-sync-blackboard)
                ;; The records were rewritten...
                (should (meta-log-federation-wait-until
                         (lambda () (not (equal records
                                                (meta-log-federation-test-file-string side))))
                         20))
                ;; ...and over a quiet interval after it no peer published a change.
                (meta-log-federation-wait-until #'ignore 4)
                (should (= (funcall changes) before))
                (should-not (string-search ":PEER_ID:" (meta-log-federation-test-file-string file)))
                (should-not (meta-log-federation-canvasl-conflicts file))
                (should-not (meta-log-federation-canvasl-conflicts
                             (meta-log-federation-blackboard-file-of bob-id)))))
          (delete-process sub)
          (kill-buffer sniffed))))))

(ert-deftest blackboard::a-deleted-shared-blackboard-comes-back-from-its-merge-state ()
  (meta-log-federation-test-with-federation
    (let* ((meta-log-federation-blackboard-shared nil)
           (file meta-log-federation--blackboard))
      (meta-log-federation-bb-test-write-ideas file)
      (kill-buffer (find-buffer-visiting file))
      (should (meta-log-federation-share-blackboard))
      ;; Deleted while Emacs is closed: the next start must not replace it
      ;; by an empty blackboard (an edit deleting everything peers wrote).
      (meta-log-federation-shutdown)
      (delete-file file)
      (should (eq t (meta-log-federation-init file (meta-log-federation-test-broker-url))))
      (should (meta-log-federation-wait-until
               (lambda () (let ((text (meta-log-federation-test-file-string file)))
                            (and text (string-search "** Ideas\n- one\n- two\n" text))))
               20))
      (should (meta-log-federation-blackboard-shared-p))
      (should-not (string-search ":PEER_ID:" (meta-log-federation-test-file-string file)))
      ;; Unshared, then deleted: the next start begins with an empty blackboard.
      (meta-log-federation-unshare-canvasl file)
      (meta-log-federation-shutdown)
      (delete-file file)
      (should (eq t (meta-log-federation-init file (meta-log-federation-test-broker-url))))
      (let ((text (meta-log-federation-test-file-string file)))
        (should (string-search "* Federation Blackboard\n" text))
        (should-not (string-search "** Ideas" text))))))

(provide 'meta-log-federation-blackboard-test)
;;; meta-log-federation-blackboard-test.el ends here
