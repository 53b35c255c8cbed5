/**
 * One error model for both apps. Every failure a client can cause is an
 * AppError with a stable `code` and HTTP `status`; the error middleware turns
 * it into `{"error":{"code","message","details"}}`. Anything else is a 500
 * whose message and stack never reach the client.
 */
export class AppError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details: unknown;
  /** True when the same request may succeed later (5xx, 429, 503). */
  readonly retryable: boolean;

  constructor(status: number, code: string, message: string, details: unknown = null) {
    super(message);
    this.name = new.target.name;
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryable = status >= 500 || status === 429;
  }
}

export class BadRequestError extends AppError {
  constructor(message: string, details: unknown = null, code = 'bad_request') {
    super(400, code, message, details);
  }
}

export class ValidationError extends AppError {
  constructor(message: string, details: unknown = null) {
    super(422, 'validation_error', message, details);
  }
}

export class UnauthorizedError extends AppError {
  constructor(message = 'Missing or invalid bearer token', code = 'unauthorized') {
    super(401, code, message);
  }
}

export class ForbiddenError extends AppError {
  constructor(message: string, details: unknown = null) {
    super(403, 'forbidden', message, details);
  }
}

export class NotFoundError extends AppError {
  constructor(message: string, details: unknown = null) {
    super(404, 'not_found', message, details);
  }
}

export class MethodNotAllowedError extends AppError {
  constructor(method: string, path: string) {
    super(405, 'method_not_allowed', `${method} is not allowed on ${path}`);
  }
}

export class ConflictError extends AppError {
  constructor(message: string, details: unknown = null) {
    super(409, 'conflict', message, details);
  }
}

export class PayloadTooLargeError extends AppError {
  constructor(limitBytes: number) {
    super(413, 'payload_too_large', `Request body is larger than the limit of ${limitBytes} bytes (MAX_BODY_BYTES at this site)`, {
      limit_bytes: limitBytes,
    });
  }
}

export class UnavailableError extends AppError {
  constructor(message: string, details: unknown = null) {
    super(503, 'service_unavailable', message, details);
  }
}

export class InsufficientStorageError extends AppError {
  constructor(message: string, details: unknown = null) {
    super(507, 'buffer_full', message, details);
  }
}

/**
 * A raw data file put in a package of another observation (the same answer at the edge, which checks
 * what it holds, and at central, whose trigger `raw_data_file_package_observation` (migration 012) checks the rest).
 */
export function packageOfAnotherObservation(packageId: string, observationId: string, stepId: string | null): ValidationError {
  return new ValidationError(
    `raw_data_package ${packageId} is not a package of executed_obs_unit ${observationId}, the file's observation: ` +
      'a file can only be put in a package of its own observation',
    { step: stepId, table: 'raw_data_file', raw_data_package_id: packageId, executed_obs_unit_id: observationId },
  );
}
