;;; blackboard-bench.el --- Text share figures of `make bench'  -*- lexical-binding: t; -*-

;;; Commentary:

;; emacs --batch -Q -L lisp -L test -L bench -l bench/blackboard-bench.el PORT
;; This Emacs shares a generated 1,000-line Org file (a blackboard-like
;; outline: headings and list items) as a text share with a second batch
;; Emacs on the broker at 127.0.0.1:PORT, then edits one line at a time
;; in a buffer and saves, as a user would.  Prints the time from the
;; save here to the file updated on the other peer (p50, max), and
;; whether both files are identical at the end.  No target: the figure
;; sits next to the canvas ones of sync-bench.el.

;;; Code:

(require 'meta-log-federation-test-helpers)
(require 'cl-lib)

(defvar mlf-bb-port (string-to-number (pop command-line-args-left)))
(setq meta-log-federation-test-broker-port mlf-bb-port
      meta-log-federation-verbose nil)

(defun mlf-bb-peer (name)
  "Start a test peer NAME; return its process when ready, with property `dir'."
  (let* ((dir (make-temp-file "mlf-bb-peer-" t))
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

(defun mlf-bb-count (proc regexp)
  "Count the report lines of PROC matching REGEXP."
  (with-current-buffer (process-buffer proc)
    (how-many (concat "^PEER: " regexp) (point-min) (point-max))))

(defun mlf-bb-generate (file lines)
  "Write an Org outline of about LINES lines to FILE."
  (with-temp-file file
    (insert "#+TITLE: Federation Blackboard\n\n* Federation Blackboard\n")
    (let ((i 0))
      (while (< i (- lines 3))
        (insert (if (zerop (% i 10))
                    (format "** Topic %d\n" (/ i 10))
                  (format "- item %d: a note written on the blackboard\n" i)))
        (setq i (1+ i))))))

(let* ((dir (make-temp-file "mlf-bb-self-" t))
       (meta-log-federation-identity-file (expand-file-name "id.org" dir))
       (meta-log-federation-trust-file (expand-file-name "trust.json" dir))
       (meta-log-federation-sync-directory (expand-file-name "sync/" dir))
       (meta-log-federation-sync-state-directory (expand-file-name "state/" dir))
       (meta-log-federation-display-name "blackboard-bench")
       (file (expand-file-name "outline-1k.org" dir))
       (edits 30)
       (witness nil) (me nil) (url nil) (times nil))
  (meta-log-federation-init (expand-file-name "bb.org" dir) (meta-log-federation-test-broker-url))
  (meta-log-federation-wait-until #'meta-log-federation-connected-p 10)
  (setq me (plist-get (meta-log-federation-get-local-peer-identity) :peer-id))
  (setq witness (mlf-bb-peer "blackboard-witness"))
  (meta-log-federation-wait-until
   (lambda () (cl-some (lambda (p) (eq (plist-get p :status) 'online)) (meta-log-federation-peers)))
   10)
  (mlf-bb-generate file 1000)
  (setq url (meta-log-federation-share-canvasl file))
  (unless (meta-log-federation-wait-until
           (lambda () (> (mlf-bb-count witness (format "UPDATED %s t" (regexp-quote url))) 0))
           60)
    (error "%s never arrived" url))
  (with-current-buffer (find-file-noselect file)
    (dotimes (i edits)
      (let ((updates (mlf-bb-count witness (format "UPDATED %s nil" (regexp-quote url))))
            (t0 (float-time)))
        ;; The clock starts when the file is saved: the first after-save
        ;; function runs once Emacs has written it.
        (add-hook 'after-save-hook (lambda () (setq t0 (float-time))) -100 t)
        (goto-char (point-min))
        (forward-line (+ 4 (% (* (1+ i) 7919) 990)))
        (end-of-line)
        (insert (format " (edit %d)" i))
        (save-buffer)
        (setq after-save-hook (cl-remove-if #'functionp after-save-hook))
        (unless (meta-log-federation-wait-until
                 (lambda () (> (mlf-bb-count witness (format "UPDATED %s nil" (regexp-quote url)))
                               updates))
                 60)
          (error "Edit %d never arrived" i))
        (push (* 1000 (- (float-time) t0)) times)))
    (kill-buffer))
  (let* ((sorted (sort times #'<))
         (target (expand-file-name (format "sync/%s/%s" me (file-name-nondirectory file))
                                   (process-get witness 'dir)))
         (same (equal (meta-log-federation-test-file-string file)
                      (meta-log-federation-test-file-string target))))
    (princ (format "text share, 1,000-line Org file: save here -> file updated on the other peer: p50 %.1f ms, max %.1f ms over %d one-line edits (no target); files identical: %s\n"
                   (nth (/ (length sorted) 2) sorted) (car (last sorted)) edits
                   (if same "yes" "NO"))))
  (kill-process witness)
  (meta-log-federation-shutdown))

;;; blackboard-bench.el ends here
