;;; meta-log-federation-flood-test.el --- A flood of throwaway keys cannot stall Emacs  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; 10,000 throwaway keys each send one validly signed sync event to
;; this Emacs, which runs federation on the run's private mosquitto.
;; The events are signed by the module in a child batch Emacs and
;; published by mosquitto_pub, a plain MQTT client.  While they arrive,
;; this Emacs only waits for process output (no unbudgeted draining), so
;; only the wake-up filter and the slice timer dispatch, as in a
;; person's Emacs.  The test asserts behaviour: a repeating timer keeps
;; firing while events wait, the flood is processed whole, trust.json and
;; the blackboard gain only the genuine peer that announces itself
;; meanwhile, and that peer is seen online and pinned.
;; bench/flood-bench.el uses the same helpers to print the longest stall.

;;; Code:

(require 'meta-log-federation-test-helpers)
(require 'meta-log-federation-federation-test)
(require 'json)

(defvar meta-log-federation-flood-keys 10000
  "How many throwaway keys flood this Emacs, one signed event each.")

(defun meta-log-federation-flood-generate (file n)
  "Write N sync events, each signed by a key of its own, to FILE, one a line.
A child batch Emacs signs them with the module (the keys come from one
fresh recovery phrase along N derivation paths), so this Emacs is not
busy meanwhile with anything but waiting."
  (let* ((command (meta-log-federation-test-emacs-command
                   `(progn
                      (require 'meta-log-federation)
                      (let ((phrase (meta-log-federation-mnemonic-generate)))
                        (with-temp-file ,file
                          (dotimes (i ,n)
                            (insert (meta-log-federation-sign-event
                                     (meta-log-federation-identity-from-mnemonic
                                      phrase nil (format "m/44'/1237'/%d'/0/0" i))
                                     4771 "{}" `(("v" ,(meta-log-federation--protocol-version)) ("t" "sync")))
                                    "\n"))))))))
    (with-temp-buffer
      (unless (zerop (apply #'call-process (car command) nil t nil (cdr command)))
        (error "Signing the flood failed: %s" (buffer-string))))
    file))

(defun meta-log-federation-flood-publish (file)
  "Publish each line of FILE on canvasl/sync with mosquitto_pub.
Return the mosquitto_pub process."
  (let ((pub (or (executable-find "mosquitto_pub")
                 (ert-skip "mosquitto_pub is not installed (apt-get install mosquitto-clients)"))))
    (make-process
     :name "flood-pub" :buffer (generate-new-buffer " *flood-pub*") :noquery t
     :command (list shell-file-name shell-command-switch
                    (format "exec %s -h 127.0.0.1 -p %d -q 1 -t canvasl/sync -l < %s"
                            (shell-quote-argument pub) meta-log-federation-test-broker-port
                            (shell-quote-argument file))))))

(defun meta-log-federation-flood-start-peer (name)
  "Start a genuine batch Emacs peer NAME without waiting; return its process.
Unlike `meta-log-federation-test-start-peer', nothing here drains the
module's events, so the slicing under test stays in charge."
  (let* ((dir (meta-log-federation-test-peer-dir name))
         (proc (make-process
                :name name :buffer (generate-new-buffer (format " *%s*" name)) :noquery t
                :command (append
                          (meta-log-federation-test-emacs-command
                           `(setq test-peer-name ,name test-peer-dir ,dir
                                  test-peer-broker ,(meta-log-federation-test-broker-url)))
                          (list "-l" (expand-file-name
                                      "meta-log-federation-test-peer.el"
                                      (file-name-directory
                                       (locate-library "meta-log-federation-test-helpers"))))))))
    (push proc meta-log-federation-test-peers)
    proc))

(defun meta-log-federation-flood-keys-of (file)
  "Return a hash table of the signers' peer ids of the events in FILE."
  (let ((keys (make-hash-table :test #'equal :size 20000)))
    (with-temp-buffer
      (insert-file-contents file)
      (while (re-search-forward "\"pubkey\":\"\\([0-9a-f]\\{64\\}\\)\"" nil t)
        (puthash (match-string 1) t keys)))
    keys))

(defun meta-log-federation-flood-wait (predicate timeout)
  "Wait for process output and timers until PREDICATE holds or TIMEOUT passes.
Return PREDICATE's last value.  Never dispatches events itself."
  (let ((deadline (+ (float-time) timeout))
        result)
    (while (and (not (setq result (funcall predicate)))
                (< (float-time) deadline))
      (accept-process-output nil 0.01))
    result))

(defun meta-log-federation-flood-handled ()
  "Return how many events the federation accepted or dropped so far."
  (let ((c (meta-log-federation-counters)))
    (+ (plist-get c :accepted) (plist-get c :dropped))))

(defun meta-log-federation-flood-trusted-ids ()
  "Return the peer ids in the trust file, sorted (nil if it does not exist)."
  (meta-log-federation--save-trust)
  (when (file-exists-p meta-log-federation-trust-file)
    (let ((peers (gethash "peers" (json-parse-string
                                   (with-temp-buffer
                                     (insert-file-contents meta-log-federation-trust-file)
                                     (buffer-string))))))
      (sort (hash-table-keys peers) #'string<))))

(defun meta-log-federation-flood-blackboard-ids (file)
  "Return the peer ids recorded in the blackboard FILE, sorted."
  (meta-log-federation-sync-blackboard)
  (with-temp-buffer
    (insert-file-contents file)
    (let (ids)
      (while (re-search-forward "^:PEER_ID: \\([0-9a-f]+\\)$" nil t)
        (push (match-string 1) ids))
      (sort ids #'string<))))

(defvar meta-log-federation-flood-ticks nil
  "List of (TIME . BACKLOG-P), one for each tick of the watch timer.
Newest first; BACKLOG-P says whether events were waiting.")

(defvar meta-log-federation-flood-announced (make-hash-table :test #'equal)
  "Peer ids seen announced (with a presence) at any tick sampled.
Peers of earlier tests announce themselves from the broker's retained
presence and may leave the peer table again when the flood fills it.")

(defun meta-log-federation-flood-note-announced ()
  "Add the peers announced now to `meta-log-federation-flood-announced'."
  (dolist (p (meta-log-federation--announced-peers-now))
    (puthash (plist-get p :peer-id) t meta-log-federation-flood-announced)))

(defun meta-log-federation-flood-watch ()
  "Start a timer that records when it fires and whether events wait; return it.
Every 20th tick it also notes which peers are announced."
  (setq meta-log-federation-flood-ticks nil)
  (clrhash meta-log-federation-flood-announced)
  (meta-log-federation-flood-note-announced)
  (let ((n 0))
    (run-at-time 0.005 0.005
                 (lambda ()
                   (push (cons (float-time) (and meta-log-federation--backlog t))
                         meta-log-federation-flood-ticks)
                   (when (zerop (% (setq n (1+ n)) 20))
                     (meta-log-federation-flood-note-announced))))))

(defun meta-log-federation-flood-longest-gap (start end)
  "Return the longest time in seconds between watch ticks from START to END."
  (let ((times (sort (append (list start end)
                             (cl-remove-if-not (lambda (time) (<= start time end))
                                               (mapcar #'car meta-log-federation-flood-ticks)))
                     #'<))
        (longest 0))
    (cl-loop for (a b) on times while b
             do (setq longest (max longest (- b a))))
    longest))

(ert-deftest flood::ten-thousand-throwaway-keys-change-nothing-and-stall-nothing ()
  "Each of 10,000 keys sends one signed event: Emacs keeps running, nothing grows."
  (meta-log-federation-test-with-federation
    (let* ((file (meta-log-federation-flood-generate
                  (expand-file-name (format "flood-%d.jsonl" (random 1000000))
                                    meta-log-federation-test-directory)
                  meta-log-federation-flood-keys))
           (blackboard (expand-file-name "blackboard.org"
                                         (file-name-directory meta-log-federation-trust-file)))
           (trusted-before (meta-log-federation-flood-trusted-ids))
           (recorded-before (meta-log-federation-flood-blackboard-ids blackboard))
           (handled-before (meta-log-federation-flood-handled))
           (peers-buffer (meta-log-federation-list-peers))
           (watch (meta-log-federation-flood-watch))
           (pub (meta-log-federation-flood-publish file))
           genuine genuine-id)
      (unwind-protect
          (progn
            ;; A genuine peer starts while the flood arrives.
            (setq genuine (meta-log-federation-flood-start-peer
                           (format "genuine-%d" (random 1000000))))
            (meta-log-federation-flood-wait
             (lambda () (and (not (process-live-p pub))
                             (null meta-log-federation--backlog)
                             (>= (- (meta-log-federation-flood-handled) handled-before)
                                 meta-log-federation-flood-keys)))
             300)
            ;; The whole flood was published and processed.
            (should (eq 0 (process-exit-status pub)))
            (should (null meta-log-federation--backlog))
            (should (>= (- (meta-log-federation-flood-handled) handled-before)
                        meta-log-federation-flood-keys))
            ;; Timers ran while events were waiting: between slices, not after.
            (should (>= (cl-count-if #'cdr meta-log-federation-flood-ticks) 10))
            (should (meta-log-federation-flood-wait
                     (lambda () (setq genuine-id (meta-log-federation-test-peer-line
                                                  genuine "READY \\([0-9a-f]+\\)")))
                     60))
            (should (meta-log-federation-flood-wait
                     (lambda () (eq (meta-log-federation-test-status genuine-id) 'online))
                     30))
            (should (eq (plist-get (meta-log-federation-peer genuine-id) :trust) 'pinned))
            ;; The module's list of announced peers (what the blackboard
            ;; asks for) follows the same rule as the full list.
            (let ((announced (mapcar (lambda (p) (plist-get p :peer-id))
                                     (meta-log-federation--announced-peers-now))))
              (should (member genuine-id announced))
              (should (equal announced
                             (mapcar (lambda (p) (plist-get p :peer-id))
                                     (meta-log-federation--announced-peers
                                      (meta-log-federation-peers))))))
            ;; No flood key was pinned or recorded; the genuine peer was.
            ;; (Peers of earlier tests may announce themselves meanwhile
            ;; from the broker's retained presence: those may be added.)
            (meta-log-federation-flood-note-announced)
            (let ((flood (meta-log-federation-flood-keys-of file)))
              (should (= (hash-table-count flood) meta-log-federation-flood-keys))
              (dolist (pair (list (cons trusted-before (meta-log-federation-flood-trusted-ids))
                                  (cons recorded-before
                                        (meta-log-federation-flood-blackboard-ids blackboard))))
                (let ((after (cdr pair)))
                  (should (member genuine-id after))
                  (should (= 0 (cl-count-if (lambda (id) (gethash id flood)) after)))
                  (should (cl-every (lambda (id) (or (member id (car pair))
                                                     (gethash id meta-log-federation-flood-announced)))
                                    after))))))
        (cancel-timer watch)
        (when (process-live-p pub) (kill-process pub))
        (kill-buffer (process-buffer pub))
        (kill-buffer peers-buffer)))))

(provide 'meta-log-federation-flood-test)
;;; meta-log-federation-flood-test.el ends here
