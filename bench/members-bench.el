;;; members-bench.el --- Figures of shares with members for `make bench'  -*- lexical-binding: t; -*-

;;; Commentary:

;; emacs --batch -Q -L lisp -L test -L bench -l bench/members-bench.el PORT
;; This Emacs shares two canvases of 1,000 entries with a second batch
;; Emacs on the broker at 127.0.0.1:PORT: one with the whole federation
;; (signed, in clear) and one with the other peer as its only member
;; (sealed with the share's key, on a topic of its own).  It edits one
;; entry at a time and saves, as a user would, and prints for each the
;; bytes this peer published per edit (its signed events as the broker
;; sends them back) and the time from the save here to the file updated
;; there (p50), then the encrypted share's p50 against the plain one's.
;; Reuses the helpers of bench/sync-bench.el's figures.

;;; Code:

(require 'meta-log-federation-test-helpers)
(require 'cl-lib)
(require 'meta-log-federation-bench-target)

(defvar mlf-members-port (string-to-number (pop command-line-args-left)))
(setq meta-log-federation-test-broker-port mlf-members-port
      meta-log-federation-verbose nil)

(defvar mlf-members-sent 0 "Bytes of sync events published by this peer.")
(defvar mlf-members-markers 0 "Markers back from the broker.")

(defun mlf-members-count-own (me)
  "Return a handler adding the size of each sync event signed by ME."
  (lambda (_topic payload)
    (let ((event (ignore-errors (json-parse-string payload :object-type 'alist))))
      (when (equal (alist-get 'pubkey event) me)
        (setq mlf-members-sent (+ mlf-members-sent (string-bytes payload)))))))

(defun mlf-members-flush ()
  "Return once every event this peer published so far has come back."
  (let ((n mlf-members-markers))
    (meta-log-federation-mqtt-publish "bench/members-marker" "marker" 1)
    (unless (meta-log-federation-wait-until (lambda () (> mlf-members-markers n)) 10)
      (error "The marker did not come back"))))

(defun mlf-members-peer (name)
  "Start a peer NAME; return its process when ready.
Its properties `dir' and `peer-id' hold its directory and id."
  (let* ((dir (make-temp-file "mlf-members-peer-" t))
         (p (make-process
             :name name :buffer (generate-new-buffer (format " *%s*" name)) :noquery t
             :command (append (meta-log-federation-test-emacs-command
                               `(setq test-peer-name ,name test-peer-dir ,dir
                                      test-peer-broker ,(meta-log-federation-test-broker-url)))
                              (list "-l" (expand-file-name "test/meta-log-federation-test-peer.el"))))))
    (process-put p 'dir dir)
    (meta-log-federation-wait-until
     (lambda () (with-current-buffer (process-buffer p)
                  (goto-char (point-min))
                  (when (re-search-forward "^PEER: READY \\([0-9a-f]+\\)" nil t)
                    (process-put p 'peer-id (match-string 1)))))
     30)
    p))

(defun mlf-members-updates (proc url)
  "Count the remote updates of URL that PROC reported."
  (with-current-buffer (process-buffer proc)
    (how-many (format "^PEER: UPDATED %s nil" (regexp-quote url)) (point-min) (point-max))))

(defun mlf-members-generate (file n)
  "Write a canvas of N entries to FILE."
  (with-temp-file file
    (insert "@version 1.0\n@schema canvasl\n")
    (dotimes (i n)
      (insert (format "{\"id\":\"n%d\",\"type\":\"text\",\"text\":\"node %d of the canvas\",\"x\":%d,\"y\":%d}\n"
                      i i (* 10 (% i 100)) (* 10 (/ i 100)))))))

(defun mlf-members-median (xs)
  "Return the median of XS."
  (nth (/ (length xs) 2) (sort (copy-sequence xs) #'<)))

(defun mlf-members-run (label file witness members edits)
  "Share FILE (LABEL) with MEMBERS (`all' or ids), seen by WITNESS.
Time EDITS one-entry edits; return (BYTES-MEDIAN . P50-MS)."
  (let* ((url (meta-log-federation-share-canvasl file :members members))
         (me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
         (target (expand-file-name (format "sync/%s/%s" me (file-name-nondirectory file))
                                   (process-get witness 'dir)))
         (times nil) (bytes nil))
    (unless (meta-log-federation-wait-until (lambda () (file-exists-p target)) 60)
      (error "%s never arrived" url))
    (with-current-buffer (find-file-noselect file)
      (dotimes (i edits)
        (mlf-members-flush)
        (let ((updates (mlf-members-updates witness url))
              (sent mlf-members-sent)
              (t0 (float-time)))
          (add-hook 'after-save-hook (lambda () (setq t0 (float-time))) -100 t)
          (goto-char (point-min))
          (forward-line (+ 2 (% (* (1+ i) 7919) 997)))
          (let ((entry (json-parse-string
                        (buffer-substring (line-beginning-position) (line-end-position))
                        :object-type 'alist)))
            (setf (alist-get 'bench entry) (format "edit %d" i))
            (delete-region (line-beginning-position) (line-end-position))
            (insert (json-serialize entry)))
          (save-buffer)
          (setq after-save-hook (cl-remove-if #'functionp after-save-hook))
          (unless (meta-log-federation-wait-until
                   (lambda () (> (mlf-members-updates witness url) updates)) 60)
            (error "Edit %d of %s never arrived" i url))
          (push (* 1000 (- (float-time) t0)) times)
          (mlf-members-flush)
          (push (- mlf-members-sent sent) bytes)))
      (kill-buffer))
    (princ (format "members %s: one-entry edit: %d bytes published by this peer (median of %d; its signed events, all included) %s; save here -> file updated on the member: p50 %.1f ms\n"
                   label (mlf-members-median bytes) edits
                   (meta-log-federation-bench-target "< 1 KB" (< (mlf-members-median bytes) 1024))
                   (mlf-members-median times)))
    (cons (mlf-members-median bytes) (mlf-members-median times))))

(let* ((dir (make-temp-file "mlf-members-self-" t))
       (meta-log-federation-identity-file (expand-file-name "id.org" dir))
       (meta-log-federation-trust-file (expand-file-name "trust.json" dir))
       (meta-log-federation-sync-directory (expand-file-name "sync/" dir))
       (meta-log-federation-sync-state-directory (expand-file-name "state/" dir))
       (meta-log-federation-display-name "members-bench")
       (witness nil) (me nil))
  (meta-log-federation-init (expand-file-name "bb.org" dir) (meta-log-federation-test-broker-url))
  (meta-log-federation-wait-until #'meta-log-federation-connected-p 10)
  (setq me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
  (meta-log-federation-mqtt-subscribe "canvasl/sync" (mlf-members-count-own me) 1)
  (meta-log-federation-mqtt-subscribe "canvasl/sync/+" (mlf-members-count-own me) 1)
  (meta-log-federation-mqtt-subscribe "bench/members-marker"
                                      (lambda (_topic _payload)
                                        (setq mlf-members-markers (1+ mlf-members-markers)))
                                      1)
  (setq witness (mlf-members-peer "members-witness"))
  (meta-log-federation-wait-until
   (lambda () (meta-log-federation-peer (process-get witness 'peer-id))) 10)
  (let* ((plain-file (expand-file-name "plain-1k.canvasl" dir))
         (sealed-file (expand-file-name "sealed-1k.canvasl" dir))
         (plain (progn (mlf-members-generate plain-file 1000)
                       (mlf-members-run "plain, 1,000 entries" plain-file witness 'all 30)))
         (sealed (progn (mlf-members-generate sealed-file 1000)
                        (mlf-members-run "encrypted, 1,000 entries" sealed-file witness
                                         (list (process-get witness 'peer-id)) 30)))
         (ratio (/ (cdr sealed) (max 0.001 (cdr plain)))))
    (princ (format "members: save -> updated p50 at 1,000 entries, encrypted %.1f ms vs plain %.1f ms = %.2fx %s; bytes per edit %d vs %d\n"
                   (cdr sealed) (cdr plain) ratio
                   (meta-log-federation-bench-target "within 20%" (<= ratio 1.2))
                   (car sealed) (car plain))))
  (kill-process witness)
  (meta-log-federation-shutdown))

;;; members-bench.el ends here
