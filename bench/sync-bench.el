;;; sync-bench.el --- CanvasL sync figures of `make bench'  -*- lexical-binding: t; -*-

;;; Commentary:

;; emacs --batch -Q -L lisp -L test -L bench -l bench/sync-bench.el PORT
;; This Emacs shares canvases (1,000 and 100,000 generated entries, and
;; the largest corpus file) with a second batch Emacs on the broker at
;; 127.0.0.1:PORT, then edits one entry at a time and saves, as a user
;; would.  Prints: time for the new peer to receive the whole canvas,
;; bytes published per one-entry edit (signed events, everything
;; included) against the whole file as the prototype sent it, time from
;; the save here to the file updated there (p50, max).  The bytes are
;; those of the sync events this peer signed, as the broker sends them
;; back to it; a marker published after each save, on the same
;; connection, comes back after all of them.  Memory per shared file is
;; measured by examples/sync_bench.rs (allocator counts).

;;; Code:

(require 'meta-log-federation-test-helpers)
(require 'cl-lib)
(require 'meta-log-federation-bench-target)

(defvar mlf-sync-port (string-to-number (pop command-line-args-left)))
(setq meta-log-federation-test-broker-port mlf-sync-port
      meta-log-federation-verbose nil
      large-file-warning-threshold nil)

(defvar mlf-sync-sent 0 "Bytes of sync events published by this peer.")

(defvar mlf-sync-markers 0 "Markers back from the broker.")

(defun mlf-sync-count-own (me)
  "Return a handler adding the size of each sync event signed by ME."
  (lambda (_topic payload)
    (let ((event (ignore-errors (json-parse-string payload :object-type 'alist))))
      (when (equal (alist-get 'pubkey event) me)
        (setq mlf-sync-sent (+ mlf-sync-sent (string-bytes payload)))))))

(defun mlf-sync-flush ()
  "Return once every event this peer published so far has come back.
QoS 1 on one connection keeps order: the marker comes back last."
  (let ((n mlf-sync-markers))
    (meta-log-federation-mqtt-publish "bench/sync-marker" "marker" 1)
    (unless (meta-log-federation-wait-until (lambda () (> mlf-sync-markers n)) 10)
      (error "The marker did not come back"))))

(defun mlf-sync-peer (name)
  "Start a peer NAME; return its process when ready, with property `dir'."
  (let* ((dir (make-temp-file "mlf-sync-peer-" t))
         (p (make-process
             :name name :buffer (generate-new-buffer (format " *%s*" name)) :noquery t
             :command (append (meta-log-federation-test-emacs-command
                               `(setq test-peer-name ,name test-peer-dir ,dir
                                      test-peer-broker ,(meta-log-federation-test-broker-url)))
                              (list "-l" (expand-file-name "test/meta-log-federation-test-peer.el"))))))
    (process-put p 'dir dir)
    (meta-log-federation-wait-until
     (lambda () (with-current-buffer (process-buffer p)
                  (string-search "PEER: READY" (buffer-string))))
     30)
    p))

(defun mlf-sync-count (proc regexp)
  "Count the report lines of PROC matching REGEXP."
  (with-current-buffer (process-buffer proc)
    (how-many (concat "^PEER: " regexp) (point-min) (point-max))))

(defun mlf-sync-generate (file n)
  "Write a canvas of N entries (nodes and edges) to FILE."
  (with-temp-file file
    (insert "@version 1.0\n@schema canvasl\n")
    (dotimes (i n)
      (insert (if (zerop (% i 4))
                  (format "{\"id\":\"e%d\",\"type\":\"edge\",\"fromNode\":\"n%d\",\"toNode\":\"n%d\",\"label\":\"link %d\"}\n"
                          i i (1+ i) i)
                (format "{\"id\":\"n%d\",\"type\":\"text\",\"text\":\"node %d of the canvas\",\"x\":%d,\"y\":%d,\"width\":250,\"height\":60}\n"
                        i i (* 10 (% i 100)) (* 10 (/ i 100))))))))

(defun mlf-sync-edit-line (n)
  "Change the line N+1 lines below the directives of the current buffer, then save."
  (goto-char (point-min))
  (forward-line (+ 2 n))
  (let* ((line (buffer-substring (line-beginning-position) (line-end-position)))
         (entry (json-parse-string line :object-type 'alist)))
    (setf (alist-get 'bench entry) (format "edit %d at %f" n (float-time)))
    (delete-region (line-beginning-position) (line-end-position))
    (insert (json-serialize entry)))
  (save-buffer))

(defun mlf-sync-median (xs)
  "Return the median of XS."
  (nth (/ (length xs) 2) (sort (copy-sequence xs) #'<)))

(defun mlf-sync-run (label file witness me edits &optional latency-ms arrival-s)
  "Share FILE (LABEL), measure its arrival at WITNESS and EDITS one-entry edits.
LATENCY-MS is the target of the save -> update p50, ARRIVAL-S that of
the whole canvas's arrival (nil: no target)."
  (let* ((size (file-attribute-size (file-attributes file)))
         (start (float-time))
         (url (meta-log-federation-share-canvasl file))
         (target (expand-file-name (format "sync/%s/%s" me (file-name-nondirectory file))
                                   (process-get witness 'dir)))
         (arrival nil))
    (unless (meta-log-federation-wait-until
             (lambda () (mlf-sync-count witness (format "UPDATED %s t" (regexp-quote url))))
             120)
      (error "%s never arrived" url))
    (setq arrival (- (float-time) start))
    (let ((times nil) (bytes nil)
          (lines (with-temp-buffer (insert-file-contents file) (count-lines (point-min) (point-max)))))
      (with-current-buffer (find-file-noselect file)
        (dotimes (i edits)
          (mlf-sync-flush)
          (let ((updates (mlf-sync-count witness (format "UPDATED %s nil" (regexp-quote url))))
                (sent mlf-sync-sent)
                (t0 (float-time)))
            ;; The clock starts when the file is saved: the first after-save
            ;; function runs once Emacs has written it.
            (add-hook 'after-save-hook (lambda () (setq t0 (float-time))) -100 t)
            (mlf-sync-edit-line (% (* (1+ i) 7919) (- lines 3)))
            (setq after-save-hook (cl-remove-if #'functionp after-save-hook))
            (unless (meta-log-federation-wait-until
                     (lambda () (> (mlf-sync-count witness (format "UPDATED %s nil" (regexp-quote url)))
                                   updates))
                     60)
              (error "Edit %d of %s never arrived" i url))
            (push (* 1000 (- (float-time) t0)) times)
            ;; Our own events come back from the broker: all of them, once the marker has.
            (mlf-sync-flush)
            (push (- mlf-sync-sent sent) bytes)))
        (kill-buffer))
      (let ((same (equal (with-temp-buffer (set-buffer-multibyte nil)
                                           (insert-file-contents-literally file) (buffer-string))
                         (with-temp-buffer (set-buffer-multibyte nil)
                                           (insert-file-contents-literally target) (buffer-string)))))
        (princ (format "sync %s: %s bytes, %d lines; share here -> whole canvas written on the other peer in %.0f ms %s; files identical after %d edits: %s\n"
                       label size lines (* 1000 arrival)
                       (if arrival-s
                           (meta-log-federation-bench-target (format "< %d s" arrival-s)
                                                             (< arrival arrival-s))
                         "(no target)")
                       edits (if same "yes" "NO")))
        (princ (format "sync %s: one-entry edit: %d bytes published by this peer (median; its signed events, all included) vs %d for the whole file = %.0fx less %s\n"
                       label (mlf-sync-median bytes) size (/ (float size) (mlf-sync-median bytes))
                       (meta-log-federation-bench-target "< 1 KB" (< (mlf-sync-median bytes) 1024))))
        (princ (format "sync %s: save here -> file updated on the other peer: p50 %.1f ms, max %.1f ms %s\n"
                       label (mlf-sync-median times) (apply #'max times)
                       (if latency-ms
                           (meta-log-federation-bench-target (format "p50 < %d ms" latency-ms)
                                                             (< (mlf-sync-median times) latency-ms))
                         "(no target)")))))))

(let* ((dir (make-temp-file "mlf-sync-self-" t))
       (meta-log-federation-identity-file (expand-file-name "id.org" dir))
       (meta-log-federation-trust-file (expand-file-name "trust.json" dir))
       (meta-log-federation-sync-directory (expand-file-name "sync/" dir))
       (meta-log-federation-sync-state-directory (expand-file-name "state/" dir))
       (meta-log-federation-display-name "sync-bench")
       (witness nil) (me nil))
  (meta-log-federation-init (expand-file-name "bb.org" dir) (meta-log-federation-test-broker-url))
  (meta-log-federation-wait-until #'meta-log-federation-connected-p 10)
  (setq me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
  (meta-log-federation-mqtt-subscribe "canvasl/sync" (mlf-sync-count-own me) 1)
  (meta-log-federation-mqtt-subscribe "bench/sync-marker"
                                      (lambda (_topic _payload)
                                        (setq mlf-sync-markers (1+ mlf-sync-markers)))
                                      1)
  (setq witness (mlf-sync-peer "sync-witness"))
  (meta-log-federation-wait-until
   (lambda () (cl-some (lambda (p) (eq (plist-get p :status) 'online)) (meta-log-federation-peers)))
   10)
  (let ((small (expand-file-name "small-1k.canvasl" dir))
        (large (expand-file-name "large-100k.canvasl" dir))
        (corpus (car (sort (directory-files "tests/data/corpus" t "\\.\\(canvasl\\|jsonl\\)\\'")
                           (lambda (a b) (> (file-attribute-size (file-attributes a))
                                            (file-attribute-size (file-attributes b))))))))
    (mlf-sync-generate small 1000)
    (mlf-sync-generate large 100000)
    (mlf-sync-run "1,000 entries" small witness me 30 10)
    (mlf-sync-run "100,000 entries" large witness me 15 100 3)
    (let ((copy (expand-file-name (file-name-nondirectory corpus) dir)))
      (copy-file corpus copy)
      (mlf-sync-run (format "corpus %s" (file-name-nondirectory corpus)) copy witness me 15)))
  (kill-process witness)
  (meta-log-federation-shutdown))
