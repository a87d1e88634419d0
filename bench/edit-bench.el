;;; edit-bench.el --- What a one-entry edit costs, in two Emacs  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 meta-log-federation contributors
;; SPDX-License-Identifier: GPL-3.0-or-later

;;; Commentary:

;; emacs --batch -Q -L lisp -L test -L bench -l bench/edit-bench.el PORT
;; This Emacs shares generated canvases (1,000 and 100,000 entries) with
;; a second batch Emacs on the broker at 127.0.0.1:PORT, which visits
;; each received file in a buffer.  Then this Emacs edits one entry at a
;; time in its buffer and saves, as a person would.  Printed: time from
;; the save here to the change visible in the other Emacs' buffer and
;; file (p50, p99), and the longest stall of each Emacs' main thread
;; while sending and while receiving (bench/stall.el), with the longest
;; time the save itself took on the sender's main thread.  Both Emacs
;; collect garbage in the quiet moment before each edit, so that a
;; collection owed to earlier work (Emacs' own, whoever made the
;; garbage: 15-40 ms here) does not land in the edit measured; the
;; stall lines say how much collection was in the longest stall anyway,
;; and a third line how much an edit allocates on each side, so how
;; often edits alone would set off a collection.  Figures only: nothing
;; here is asserted.

;;; Code:

(require 'meta-log-federation-test-helpers)
(require 'meta-log-federation-bench-target)
(require 'cl-lib)
(require 'stall)

(declare-function meta-log-federation--module-call-stats "meta-log-federation-module")
(declare-function meta-log-federation--reset-max-call "meta-log-federation-module")
(declare-function meta-log-federation-dispatch-pending "meta-log-federation-events")

(defvar mlf-edit-port (string-to-number (pop command-line-args-left)))
(setq meta-log-federation-test-broker-port mlf-edit-port
      meta-log-federation-verbose nil
      large-file-warning-threshold nil)

(defun mlf-edit-witness ()
  "Start the receiving Emacs; return its process when ready."
  (let* ((dir (make-temp-file "mlf-edit-peer-" t))
         (test-dir (file-name-directory (locate-library "meta-log-federation-test-helpers")))
         (bench-dir (file-name-directory (locate-library "stall")))
         (p (make-process
             :name "edit-witness" :buffer (generate-new-buffer " *edit-witness*") :noquery t
             :command (append
                       (meta-log-federation-test-emacs-command
                        `(setq test-peer-name "edit-witness" test-peer-dir ,dir
                               test-peer-broker ,(meta-log-federation-test-broker-url)
                               large-file-warning-threshold nil)
                        `(load ,(expand-file-name "stall.el" bench-dir))
                        `(load ,(expand-file-name "meta-log-federation-patch-peer.el" test-dir))
                        '(add-hook 'meta-log-federation-canvasl-updated-functions
                                   (lambda (_file url _created)
                                     (test-peer-say "PUPDATED %.6f %s" (float-time) url)))
                        '(add-hook 'meta-log-federation-peer-message-functions
                                   (lambda (_from text)
                                     (cond ((equal text "pstall-start") (mlf-stall-start)
                                            (test-peer-say "PSTALL -1"))
                                           ((equal text "pstall")
                                            ;; The stall of the edit, then a
                                            ;; collection before the next.
                                            (mlf-stall-take)
                                            (let ((taken mlf-stall-taken))
                                              (mlf-stall-quiet)
                                              (test-peer-say "PSTALL %.1f %.1f %d %.1f"
                                                             (nth 0 taken) (nth 1 taken)
                                                             (nth 2 taken)
                                                             mlf-stall-collection-ms)))))))
                       (list "-l" (expand-file-name "meta-log-federation-test-peer.el" test-dir))))))
    (process-put p 'dir dir)
    (let ((id (meta-log-federation-wait-until
               (lambda () (with-current-buffer (process-buffer p)
                            (save-excursion
                              (goto-char (point-min))
                              (and (re-search-forward "^PEER: READY \\([0-9a-f]+\\)" nil t)
                                   (match-string 1)))))
               30)))
      (unless id (error "The witness did not start"))
      (process-put p 'peer-id id))
    p))

(defun mlf-edit-reports (proc word)
  "Return the rest of PROC's report lines starting with WORD, oldest first.
Each call reads only what PROC printed since the last one: the bench
polls this, and rescanning the whole output would stall this Emacs'
main thread by itself, inflating the stalls it measures."
  (let* ((key (intern (concat "mlf-reports-" word)))
         (seen (or (process-get proc key) (list 1)))
         (out (cdr seen)))
    (with-current-buffer (process-buffer proc)
      (save-excursion
        (goto-char (car seen))
        ;; Only whole lines: a line still being printed is read next time.
        (while (re-search-forward (format "^PEER: %s\\(?: \\(.*\\)\\)?\n" word) nil t)
          (push (or (match-string 1) "") out))
        (process-put proc key (cons (point) out))))
    (reverse out)))

(defun mlf-edit-wait (predicate timeout)
  "Pump events until PREDICATE is non-nil or TIMEOUT seconds pass.
Return its value.
Unlike `meta-log-federation-wait-until', this never waits for the
session's worker to finish its queue: a person's Emacs does not, and
that wait would show up as a stall of the main thread that the
product does not cause."
  (let ((deadline (+ (float-time) timeout))
        result)
    (while (and (not (setq result (funcall predicate)))
                (< (float-time) deadline))
      (when (zerop (meta-log-federation-dispatch-pending))
        (accept-process-output nil 0.002)))
    result))

(defun mlf-edit-ask (proc command word)
  "Send COMMAND to PROC and return its next report starting with WORD."
  (let ((n (length (mlf-edit-reports proc word))))
    (meta-log-federation-send-peer-message (process-get proc 'peer-id) command)
    (unless (mlf-edit-wait
             (lambda () (> (length (mlf-edit-reports proc word)) n)) 60)
      (error "No %s from the witness" word))
    (car (last (mlf-edit-reports proc word)))))

(defun mlf-edit-generate (file n)
  "Write a canvas of N entries (nodes and edges) to FILE."
  (with-temp-file file
    (insert "@version 1.0\n@schema canvasl\n")
    (dotimes (i n)
      (insert (if (zerop (% i 4))
                  (format "{\"id\":\"e%d\",\"type\":\"edge\",\"fromNode\":\"n%d\",\"toNode\":\"n%d\",\"label\":\"link %d\"}\n"
                          i i (1+ i) i)
                (format "{\"id\":\"n%d\",\"type\":\"text\",\"text\":\"node %d of the canvas\",\"x\":%d,\"y\":%d,\"width\":250,\"height\":60}\n"
                        i i (* 10 (% i 100)) (* 10 (/ i 100))))))))

(defun mlf-edit-percentile (xs p)
  "Return the P-th percentile (0..1) of XS."
  (let ((s (sort (copy-sequence xs) #'<)))
    (nth (min (1- (length s)) (floor (* p (length s)))) s)))

(defun mlf-edit-run (label file n witness me edits p50-target p99-target)
  "Share FILE of N entries (LABEL) with WITNESS, make EDITS edits; print figures.
P50-TARGET and P99-TARGET are the latency targets in ms (nil: none)."
  (mlf-edit-generate file n)
  ;; Shared as the command does it: built on the worker, the URL at once.
  (let* ((url (meta-log-federation-share-canvasl file :background t))
         (target (expand-file-name (format "sync/%s/%s" me (file-name-nondirectory file))
                                   (process-get witness 'dir)))
         (times nil) (sync-ms nil) (send-stalls nil) (receive-stalls nil)
         (collections nil))
    (unless (meta-log-federation-wait-until
             (lambda () (equal (meta-log-federation-test-file-string file)
                               (meta-log-federation-test-file-string target)))
             180)
      (error "%s never arrived" url))
    (mlf-edit-ask witness (format "pvisit:%s|%d|3" url (/ n 2)) "PVISITED")
    (mlf-edit-ask witness "pstall-start" "PSTALL")
    (mlf-stall-start)
    (with-current-buffer (find-file-noselect file)
      (dotimes (i edits)
        (let* ((before (length (mlf-edit-reports witness "PUPDATED")))
               (t-saved nil) (t-synced nil) (t-save-start nil))
          ;; A quiet moment, then the edit; the stalls are those of this edit.
          (mlf-edit-wait #'ignore 0.05)
          (mlf-edit-ask witness "pstall" "PSTALL")
          (mlf-stall-quiet)
          (push mlf-stall-collection-ms collections)
          (add-hook 'after-save-hook (lambda () (setq t-saved (float-time))) -100 t)
          (add-hook 'after-save-hook (lambda () (setq t-synced (float-time))) 100 t)
          (goto-char (point-min))
          (forward-line (+ 2 (% (* (1+ i) 7919) (- n 1))))
          (let ((entry (json-parse-string
                        (buffer-substring (line-beginning-position) (line-end-position))
                        :object-type 'alist)))
            (setf (alist-get 'bench entry) (format "edit %d" i))
            (delete-region (line-beginning-position) (line-end-position))
            (insert (json-serialize entry)))
          (setq t-save-start (float-time))
          (save-buffer)
          (setq after-save-hook (cl-remove-if #'functionp after-save-hook))
          (unless (mlf-edit-wait
                   (lambda () (> (length (mlf-edit-reports witness "PUPDATED")) before))
                   60)
            (error "Edit %d of %s never arrived" i url))
          (push (* 1000 (- (string-to-number (car (last (mlf-edit-reports witness "PUPDATED"))))
                           t-saved))
                times)
          ;; The whole save on this thread: the hand-over to the worker (or
          ;; Emacs' own write) and the sync hooks after it.
          (push (* 1000 (- t-synced t-save-start)) sync-ms)
          (mlf-stall-take)
          (push mlf-stall-taken send-stalls)
          (let ((there (mapcar #'string-to-number
                               (split-string (mlf-edit-ask witness "pstall" "PSTALL")))))
            (push (butlast there) receive-stalls)
            (push (nth 3 there) collections))))
      (set-buffer-modified-p nil)
      (kill-buffer))
    (let ((p50 (mlf-edit-percentile times 0.5))
          (p99 (mlf-edit-percentile times 0.99))
          (same (equal (meta-log-federation-test-file-string file)
                       (meta-log-federation-test-file-string target))))
      (princ (format "edit %s: save here -> visible in the other Emacs' buffer and file: p50 %.1f ms, p99 %.1f ms (%d edits, files identical: %s) %s\n"
                     label p50 p99 edits (if same "yes" "NO")
                     (meta-log-federation-bench-target
                      (if p99-target (format "p50 < %d ms, p99 < %d ms" p50-target p99-target)
                        (format "p50 < %d ms" p50-target))
                      (and (< p50 p50-target) (or (null p99-target) (< p99 p99-target))))))
      (let ((send (mlf-edit-longest send-stalls))
            (receive (mlf-edit-longest receive-stalls)))
        (princ (format "edit %s: longest main-thread stall while sending: %.1f ms (garbage collection in it: %.1f ms; the save itself, from `save-buffer' to the end of its hooks, at most %.1f ms) %s\n"
                       label (nth 0 send) (nth 1 send) (apply #'max sync-ms)
                       (meta-log-federation-bench-target "< 16 ms" (< (nth 0 send) 16))))
        (princ (format "edit %s: longest main-thread stall while receiving: %.1f ms (garbage collection in it: %.1f ms) %s\n"
                       label (nth 0 receive) (nth 1 receive)
                       (meta-log-federation-bench-target "< 16 ms" (< (nth 0 receive) 16))))
        (princ (format "edit %s: Emacs collects garbage before each edit, in both Emacs (a collection takes %.0f-%.0f ms here, whoever made the garbage); an edit allocates %s KB on the sending side, %s KB on the receiving side (bench steps included): with Emacs' `gc-cons-threshold' (%d KB) a collection every %d edits or more\n"
                       label (apply #'min collections) (apply #'max collections)
                       (mlf-edit-kb send-stalls) (mlf-edit-kb receive-stalls)
                       (/ (mlf-edit-gc-threshold) 1024)
                       (/ (mlf-edit-gc-threshold)
                          (max 1 (apply #'max (mapcar (lambda (s) (nth 2 s))
                                                      (append send-stalls receive-stalls)))))))))))

(defun mlf-edit-gc-threshold ()
  "Return Emacs' `gc-cons-threshold' outside bursts of events.
Right after events it is raised (`meta-log-federation--gc-saved' holds
the usual one)."
  (or (bound-and-true-p meta-log-federation--gc-saved)
      (default-value 'gc-cons-threshold)))

(defun mlf-edit-longest (stalls)
  "Return the longest of STALLS, each (MS GC-MS ALLOCATED-BYTES)."
  (car (sort (copy-sequence stalls) (lambda (a b) (> (car a) (car b))))))

(defun mlf-edit-kb (stalls)
  "Return the median and largest allocation of STALLS in KB, as text."
  (let ((bytes (mapcar (lambda (s) (nth 2 s)) stalls)))
    (format "%.0f (median; at most %.0f)" (/ (mlf-edit-percentile bytes 0.5) 1024.0)
            (/ (apply #'max bytes) 1024.0))))

(defun mlf-edit-longest-calls (witness)
  "Print the longest single module call of this Emacs and of WITNESS.
Each from after its init: CPU time of Emacs' thread (its garbage
collections left out: see `meta-log-federation--module-call-stats'),
the target, and wall-clock time, which also counts the time the system
gave the other processes of the run."
  (let* ((answer nil)
         (meta-log-federation-peer-message-functions
          (list (lambda (_from text)
                  (when (string-prefix-p "call-stats:" text)
                    (setq answer (split-string (substring text (length "call-stats:"))))))))
         (mine (meta-log-federation-stats)))
    (meta-log-federation-send-peer-message (process-get witness 'peer-id) "call-stats")
    (meta-log-federation-wait-until (lambda () answer) 30)
    (pcase-let ((`(,their-name ,their-us ,their-cpu-name ,their-cpu-us)
                 (or answer (list "no-answer" "-1" "no-answer" "-1"))))
      (setq their-us (string-to-number their-us)
            their-cpu-us (string-to-number their-cpu-us))
      (princ (format "edit: longest single module call, CPU time (from after init): sender %d us (%s), receiver %d us (%s) %s\n"
                     (plist-get mine :max-call-cpu-us) (plist-get mine :max-call-cpu-function)
                     their-cpu-us their-cpu-name
                     (meta-log-federation-bench-target
                      "< 1 ms" (and answer (< (max (plist-get mine :max-call-cpu-us) their-cpu-us)
                                              1000)))))
      (princ (format "edit: longest single module call, wall-clock (from after init): sender %d us (%s), receiver %d us (%s) (no target: includes time the system gave other processes)\n"
                     (plist-get mine :max-call-us) (plist-get mine :max-call-function)
                     their-us their-name))
      (princ (format "edit: sender's longest module calls (wall-clock): %s\n"
                     (mapconcat (lambda (c) (format "%s %d us" (nth 0 c) (nth 2 c)))
                                (seq-take (meta-log-federation--module-call-stats) 4)
                                ", "))))))

(let* ((dir (make-temp-file "mlf-edit-self-" t))
       (meta-log-federation-identity-file (expand-file-name "id.org" dir))
       (meta-log-federation-trust-file (expand-file-name "trust.json" dir))
       (meta-log-federation-sync-directory (expand-file-name "sync/" dir))
       (meta-log-federation-sync-state-directory (expand-file-name "state/" dir))
       (meta-log-federation-display-name "edit-bench")
       (witness nil) (me nil))
  (meta-log-federation-init (expand-file-name "bb.org" dir) (meta-log-federation-test-broker-url))
  (meta-log-federation-wait-until #'meta-log-federation-connected-p 10)
  ;; Module calls are timed from here: the start (an identity made) happens once.
  (meta-log-federation--reset-max-call)
  (setq me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
  (setq witness (mlf-edit-witness))
  (meta-log-federation-wait-until
   (lambda () (meta-log-federation-peer (process-get witness 'peer-id))) 20)
  (mlf-edit-run "1,000 entries" (expand-file-name "edit-1k.canvasl" dir) 1000
                witness me 30 5 nil)
  (mlf-edit-run "100,000 entries" (expand-file-name "edit-100k.canvasl" dir) 100000
                witness me 30 20 60)
  (mlf-edit-longest-calls witness)
  (kill-process witness)
  (meta-log-federation-shutdown))

;;; edit-bench.el ends here
