;;; mqtt-bench.el --- MQTT figures of `make bench'  -*- lexical-binding: t; -*-

;;; Commentary:

;; emacs --batch -Q -L lisp -l bench/mqtt-bench.el PORT [BARE-QOS0-RATE]
;; Publishes 10,000 messages of 200 bytes from Elisp and receives them back
;; in an Elisp handler through the broker on 127.0.0.1:PORT, at QoS 0 and
;; QoS 1; then the prototype's way, one mosquitto_pub process per message;
;; prints rates, ratios and the longest single call into the module.

;;; Code:

(require 'meta-log-federation)

(defvar mlf-bench-port (string-to-number (pop command-line-args-left)))
(defvar mlf-bench-bare (let ((a (pop command-line-args-left))) (and a (string-to-number a))))
(defvar mlf-bench-n 10000)
(defvar mlf-bench-received 0)
(defvar meta-log-federation-verbose)
(setq meta-log-federation-verbose nil)

(defun mlf-bench-handler (_topic _payload)
  "Count a message."
  (setq mlf-bench-received (1+ mlf-bench-received)))

(defun mlf-bench-round-trip (qos)
  "Publish and receive `mlf-bench-n' messages at QOS; return messages/s."
  (let ((topic (format "bench/elisp/%d" qos))
        (payload (make-string 200 ?x)))
    (meta-log-federation-mqtt-subscribe topic #'mlf-bench-handler qos)
    ;; Wait until the subscription is active.
    (setq mlf-bench-received 0)
    (while (zerop mlf-bench-received)
      (meta-log-federation-mqtt-publish topic "probe" 1)
      (meta-log-federation-wait-until (lambda () (> mlf-bench-received 0)) 0.2))
    (meta-log-federation-wait-until (lambda () nil) 0.1)
    (setq mlf-bench-received 0)
    (meta-log-federation--reset-max-call)
    (let ((start (float-time)))
      (dotimes (_ mlf-bench-n)
        (meta-log-federation-mqtt-publish topic payload qos))
      (meta-log-federation-wait-until (lambda () (>= mlf-bench-received mlf-bench-n)) 60)
      (let* ((secs (- (float-time) start))
             (rate (/ mlf-bench-received secs)))
        (princ (format "mqtt: Elisp round trip QoS %d: %d of %d messages of 200 B in %.3f s = %.0f msg/s; longest module call %d us wall-clock (%s), %d us CPU\n"
                       qos mlf-bench-received mlf-bench-n secs rate
                       (plist-get (meta-log-federation-stats) :max-call-us)
                       (plist-get (meta-log-federation-stats) :max-call-function)
                       (plist-get (meta-log-federation-stats) :max-call-cpu-us)))
        rate))))

(defun mlf-bench-old-way (count)
  "Publish COUNT messages with one mosquitto_pub process each; return messages/s."
  (let ((payload (make-string 200 ?x))
        (start (float-time)))
    (dotimes (_ count)
      (call-process "mosquitto_pub" nil nil nil "-h" "127.0.0.1"
                    "-p" (number-to-string mlf-bench-port) "-t" "bench/old" "-m" payload))
    (let ((rate (/ count (- (float-time) start))))
      (princ (format "mqtt: old way (one mosquitto_pub process per message): %d messages = %.0f msg/s\n"
                     count rate))
      rate)))

(meta-log-federation-mqtt-connect (format "mqtt://127.0.0.1:%d" mlf-bench-port)
                                  :queue-limit 50000)
(unless (meta-log-federation-wait-until #'meta-log-federation-mqtt-connected-p 10)
  (error "Cannot connect to the bench broker on port %d" mlf-bench-port))
(let* ((q0 (mlf-bench-round-trip 0))
       (q1 (mlf-bench-round-trip 1))
       (old (mlf-bench-old-way 300)))
  (princ (format "mqtt: Elisp QoS 0 vs old way: %.0fx (target >= 100x)\n" (/ q0 old)))
  (princ (format "mqtt: Elisp QoS 1 vs old way: %.0fx\n" (/ q1 old)))
  (when mlf-bench-bare
    (princ (format "mqtt: Elisp QoS 0 vs bare Rust: %.0f%% (target >= 33%%)\n"
                   (* 100 (/ q0 mlf-bench-bare))))))
(meta-log-federation-shutdown)

;;; mqtt-bench.el ends here
